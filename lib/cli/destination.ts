/**
 * Where a pulled file (or tree) lands, and how it gets there. The design's rules (§4.3):
 * `--is-cover true` replaces an existing entry; `false` writes under `--new-name` when the name
 * is taken, and without a new name fails before anything is fetched. Names are single path
 * components: a `--new-name` or a tag's file name can never point outside `--dst-path`.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { chmod, link, lstat, mkdir, open, rename, rm, stat, unlink, utimes } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { Digest, printable } from '../core/index.js'
import { errnoCode, isShoalError, ShoalError } from '../errors/index.js'

export interface CoverRule {
  /** Replace an existing entry (default true). */
  isCover: boolean
  /** With isCover false: the name to use when the file's own name is taken. */
  newName?: string
}

const MAX_NAME_BYTES = 255

/** A single path component safe to create under a folder, or INVALID_PATH naming `what`. */
export function checkName(name: string, what: string): string {
  const bad =
    name === '' ||
    name === '.' ||
    name === '..' ||
    name.includes('/') ||
    name.includes('\\') ||
    name.includes('\0') ||
    Buffer.byteLength(name) > MAX_NAME_BYTES
  if (bad)
    throw new ShoalError(
      'INVALID_PATH',
      `invalid ${what} "${printable(name)}": a file name, not a path (no "/", not "." or "..", at most ${MAX_NAME_BYTES} bytes)`,
    )
  return name
}

/**
 * Makes sure `dir` exists (created if missing) and that a file can be created in it, at once:
 * an unwritable destination (read-only, /proc, a file in the way) fails before any download.
 */
export async function prepareDir(dir: string): Promise<string> {
  const abs = resolve(dir)
  try {
    await makeDirs(abs)
  } catch (err) {
    throw cannotWrite(abs, err)
  }
  const st = await stat(abs).catch((err) => {
    throw cannotWrite(abs, err)
  })
  if (!st.isDirectory()) throw new ShoalError('INVALID_PATH', `--dst-path ${abs} is not a directory`)
  const probe = join(abs, `.shoal-probe-${randomBytes(4).toString('hex')}`)
  try {
    const fh = await open(probe, 'wx')
    await fh.close()
  } catch (err) {
    throw cannotWrite(abs, err)
  } finally {
    await rm(probe, { force: true }).catch(() => {})
  }
  return abs
}

/**
 * mkdir -p without `{ recursive: true }`: Node 20's recursive mkdir loops forever (at full CPU)
 * when mkdir fails with ENOENT under a parent that exists, as in /proc/1/nope. Here the missing
 * components are found first, then each is created once; any failure is final.
 */
async function makeDirs(abs: string): Promise<void> {
  const missing: string[] = []
  for (let p = abs; ; ) {
    const st = await stat(p).catch((err) => {
      if (errnoCode(err) === 'ENOENT') return undefined
      throw err
    })
    if (st) break // a file in the way is reported by the caller's own check
    missing.push(p)
    const up = dirname(p)
    if (up === p) break
    p = up
  }
  for (const d of missing.reverse()) {
    try {
      await mkdir(d)
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err
    }
  }
}

function cannotWrite(dir: string, err: unknown): ShoalError {
  const code = errnoCode(err)
  const why =
    code === 'EACCES' || code === 'EPERM'
      ? 'permission denied'
      : code === 'EROFS'
        ? 'read-only file system'
        : code === 'ENOTDIR'
          ? 'a component of the path is not a directory'
          : code === 'ENOENT'
            ? 'folders cannot be created there (ENOENT)'
            : (code ?? String(err))
  return new ShoalError('INVALID_PATH', `cannot write into --dst-path ${dir}: ${why}; nothing was written`, {
    cause: err,
  })
}

/**
 * The final path for `name` in `dir` under the cover rule, decided before anything is fetched:
 * ALREADY_EXISTS when the name (and the new name) is taken and covering is off.
 */
export async function chooseTarget(dir: string, name: string, rule: CoverRule): Promise<string> {
  const own = join(dir, checkName(name, 'file name'))
  if (rule.isCover || !(await exists(own))) return own
  if (!rule.newName)
    throw new ShoalError(
      'ALREADY_EXISTS',
      `${own} already exists and --is-cover is false: give --new-name NAME to write beside it, or --is-cover true to replace it; nothing was written`,
      { details: { path: own } },
    )
  const other = join(dir, checkName(rule.newName, '--new-name'))
  if (await exists(other))
    throw new ShoalError(
      'ALREADY_EXISTS',
      `${own} and --new-name ${other} both exist and --is-cover is false; nothing was written`,
      { details: { path: other } },
    )
  return other
}

/**
 * Moves a verified temp file to its final path in the same folder. Covering renames over the
 * old file (readers see the old or the new file, never a mix); not covering links, so a file
 * that appeared meanwhile is never replaced (EEXIST → ALREADY_EXISTS, the temp file removed).
 */
export async function place(tmpPath: string, target: string, isCover: boolean): Promise<void> {
  try {
    if (isCover) {
      const st = await lstat(target).catch(() => undefined)
      if (st?.isDirectory())
        throw new ShoalError('ALREADY_EXISTS', `${target} is a directory; a file cannot replace it`)
      await rename(tmpPath, target)
      return
    }
    await link(tmpPath, target)
    await unlink(tmpPath)
  } catch (err) {
    await rm(tmpPath, { force: true })
    if (errnoCode(err) === 'EEXIST')
      throw new ShoalError(
        'ALREADY_EXISTS',
        `${target} appeared while pulling and --is-cover is false; it was kept`,
      )
    throw err
  }
}

/** A temp name beside `target`: hidden, unique, and recognisable as Shoal's. */
export function tempBeside(dir: string, name: string): string {
  // A prefix of the name only: the whole name may already be at the file system's limit.
  return join(dir, `.${name.slice(0, 40)}.shoal-${randomBytes(4).toString('hex')}.tmp`)
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path)
    return true
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false
    throw err
  }
}

/** What a pulled file keeps from its source: its mode bits and, optionally, its mtime. */
export interface FileMeta {
  /** Permission bits (e.g. 0o640); the type bits, if any, are ignored. */
  mode?: number
  mtimeMs?: number
}

/**
 * The end of every single-file pull: the verified temp file gets its mode and mtime, takes its
 * final name under the cover rule, and the folder is fsynced so the rename survives a crash
 * (a flag file written after this never points at a file that a power cut could take back).
 */
export async function finishFile(
  tmpPath: string,
  target: string,
  /**
   * beforePlace: runs once the file is ready, just before it takes the final name (a stale
   * flag's removal). signal: a cancel that arrives before the rename removes the temp file and
   * throws ABORTED, so nothing takes the final name; one after it finds the file placed.
   */
  opts: FileMeta & { isCover: boolean; beforePlace?: () => Promise<void>; signal?: AbortSignal },
): Promise<void> {
  try {
    if (opts.mode !== undefined) await chmod(tmpPath, opts.mode & 0o7777)
    if (opts.mtimeMs !== undefined) {
      const when = new Date(opts.mtimeMs)
      await utimes(tmpPath, when, when)
    }
  } catch (err) {
    await rm(tmpPath, { force: true })
    throw new ShoalError(
      'IO_ERROR',
      `cannot set the mode or mtime of ${tmpPath}: ${errnoCode(err) ?? String(err)}`,
      {
        cause: err,
      },
    )
  }
  await opts.beforePlace?.()
  // The last moment a cancel can still stop the pull (the copy and fsync before it do not look).
  await refuseIfAborted(opts.signal, tmpPath, target)
  await place(tmpPath, target, opts.isCover)
  await syncDir(dirname(target))
}

/**
 * Before a file or tree takes its final name: when `signal` was aborted, removes `tmp` and
 * throws ABORTED, so nothing of a cancelled pull is left under `target`.
 */
export async function refuseIfAborted(
  signal: AbortSignal | undefined,
  tmp: string,
  target: string,
): Promise<void> {
  if (!signal?.aborted) return
  await rm(tmp, { recursive: true, force: true })
  const reason = signal.reason
  throw isShoalError(reason)
    ? reason
    : new ShoalError(
        'ABORTED',
        `aborted before ${printable(target)} took its final name; nothing was written there`,
        {
          cause: reason,
        },
      )
}

/** fsync of a folder: makes the entries created or renamed in it durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } catch (err) {
    // Some file systems refuse fsync on a folder (EINVAL); the data itself is already synced.
    if (errnoCode(err) !== 'EINVAL' && errnoCode(err) !== 'EISDIR') throw err
  } finally {
    await fh.close()
  }
}

/**
 * Whether `path` is a regular file holding exactly the blob `digest` of `size` bytes (-1: size
 * unknown): the size first, so a different file is told apart without reading it. `onBytes` is
 * called while hashing (a large file takes a while; the caller's watchdog sees it move).
 */
export async function holdsBytes(
  path: string,
  digest: Digest,
  size: number,
  opts: { signal?: AbortSignal; onBytes?: (bytes: number) => void } = {},
): Promise<boolean> {
  const st = await lstat(path).catch(() => undefined)
  if (!st?.isFile() || (size >= 0 && st.size !== size)) return false
  const hash = createHash('sha256')
  let bytes = 0
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20, signal: opts.signal })) {
      hash.update(chunk as Buffer)
      bytes += (chunk as Buffer).length
      opts.onBytes?.(bytes)
    }
  } catch (err) {
    if (opts.signal?.aborted) throw err
    return false // unreadable: fetch it again, the rename replaces it
  }
  return Digest.fromHash(hash).equals(digest)
}
