/**
 * A directory pushed to Shoal is a manifest stored as a blob of its own (the tag points at it):
 * every entry's relative path, type, size, permission bits, mtime and, for files, sha256. The
 * JSON is canonical (fixed key order, entries sorted by path), so the same tree always gives
 * the same manifest digest and pushing an unchanged tree changes nothing.
 *
 * A manifest comes from whoever pushed the tag, so parseManifest treats it as hostile: bounded
 * size and entry count, and every path checked so that no entry can name anything outside the
 * folder it is materialised in.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { lstat, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Digest, printable } from '../core/index.js'
import { errnoCode, isAbortError, isTimeoutError, ShoalError } from '../errors/index.js'

export const MANIFEST_VERSION = 1
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024
export const MAX_MANIFEST_ENTRIES = 1_000_000
const MAX_COMPONENT_BYTES = 255
const MAX_PATH_BYTES = 4096
/** Permission bits only: setuid, setgid and sticky bits are never carried from one host to another. */
export const MODE_MASK = 0o777

export interface ManifestEntry {
  /** Relative to the root, `/`-separated, exactly the bytes of the names on disk (UTF-8). */
  path: string
  type: 'file' | 'dir'
  /** Bytes; 0 for a dir. */
  size: number
  /** Permission bits (`& 0o777`). */
  mode: number
  mtimeMs: number
  /** Files only: the content's digest, `sha256:…`. */
  digest?: string
}

export interface Manifest {
  version: typeof MANIFEST_VERSION
  /** The root folder's own mode and mtime. */
  root: { mode: number; mtimeMs: number }
  entries: ManifestEntry[]
}

export interface ManifestTotals {
  files: number
  dirs: number
  bytes: number
}

export function totals(m: Manifest): ManifestTotals {
  let files = 0
  let bytes = 0
  for (const e of m.entries)
    if (e.type === 'file') {
      files++
      bytes += e.size
    }
  return { files, dirs: m.entries.length - files, bytes }
}

/** Code-unit order: a parent always sorts before its children (it is their prefix). */
function byPath(a: ManifestEntry, b: ManifestEntry): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0
}

/** The canonical bytes: keys in a fixed order, entries sorted by path, no whitespace. */
export function encodeManifest(m: Manifest): Buffer {
  const entries = [...m.entries]
    .sort(byPath)
    .map((e) =>
      e.type === 'file'
        ? { path: e.path, type: e.type, size: e.size, mode: e.mode, mtimeMs: e.mtimeMs, digest: e.digest }
        : { path: e.path, type: e.type, size: 0, mode: e.mode, mtimeMs: e.mtimeMs },
    )
  const root = { mode: m.root.mode, mtimeMs: m.root.mtimeMs }
  return Buffer.from(JSON.stringify({ version: MANIFEST_VERSION, root, entries }))
}

function bad(message: string, details?: Record<string, unknown>): ShoalError {
  return new ShoalError('BAD_MANIFEST', `invalid directory manifest: ${message}`, { details })
}

/** Why `path` cannot be materialised under a root, or undefined when it is safe. */
export function pathProblem(path: string): string | undefined {
  if (path === '') return 'an empty path'
  if (Buffer.from(path, 'utf8').toString('utf8') !== path) return 'not valid UTF-8'
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `longer than ${MAX_PATH_BYTES} bytes`
  if (path.startsWith('/')) return 'an absolute path'
  if (path.includes('\\')) return 'a backslash'
  if (path.includes('\0')) return 'a NUL byte'
  for (const part of path.split('/')) {
    if (part === '') return 'an empty component'
    if (part === '.' || part === '..') return `a "${part}" component`
    if (Buffer.byteLength(part) > MAX_COMPONENT_BYTES)
      return `a component longer than ${MAX_COMPONENT_BYTES} bytes`
  }
  return undefined
}

const ENTRY_KEYS = new Set(['path', 'type', 'size', 'mode', 'mtimeMs', 'digest'])

function isMode(v: unknown): v is number {
  return Number.isInteger(v) && (v as number) >= 0 && (v as number) <= MODE_MASK
}

function isMtime(v: unknown): v is number {
  // Node's mtimeMs is fractional; anything a file system can hold fits well inside ±2^52 ms.
  return typeof v === 'number' && Number.isFinite(v) && Math.abs(v) < 2 ** 52
}

/**
 * Parses and checks a manifest from untrusted bytes: BAD_MANIFEST naming the first problem.
 * Entries must be sorted by path (the canonical form), unique, and every entry's parent folder
 * must be listed before it as a dir, so the tree is fully described and no file hides a folder.
 */
export function parseManifest(bytes: Buffer): Manifest {
  if (bytes.length > MAX_MANIFEST_BYTES)
    throw bad(`${bytes.length} bytes, more than the limit of ${MAX_MANIFEST_BYTES}`)
  let raw: unknown
  try {
    raw = JSON.parse(bytes.toString('utf8'))
  } catch (err) {
    throw bad(`not JSON (${(err as Error).message})`)
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('not a JSON object')
  const obj = raw as Record<string, unknown>
  for (const k of Object.keys(obj))
    if (k !== 'version' && k !== 'root' && k !== 'entries') throw bad(`unknown field "${printable(k, 40)}"`)
  if (obj.version !== MANIFEST_VERSION)
    throw bad(`version ${printable(String(obj.version), 20)} is not supported (expected ${MANIFEST_VERSION})`)
  const root = obj.root as Record<string, unknown> | undefined
  if (typeof root !== 'object' || root === null || Array.isArray(root)) throw bad('"root" is not an object')
  for (const k of Object.keys(root))
    if (k !== 'mode' && k !== 'mtimeMs') throw bad(`unknown field "root.${printable(k, 40)}"`)
  if (!isMode(root.mode)) throw bad('"root.mode" is not a permission mode (0 to 0o777)')
  if (!isMtime(root.mtimeMs)) throw bad('"root.mtimeMs" is not a time')
  if (!Array.isArray(obj.entries)) throw bad('"entries" is not an array')
  if (obj.entries.length > MAX_MANIFEST_ENTRIES)
    throw bad(`${obj.entries.length} entries, more than the limit of ${MAX_MANIFEST_ENTRIES}`)

  const types = new Map<string, 'file' | 'dir'>()
  const entries: ManifestEntry[] = []
  let total = 0
  let previous = ''
  for (const [i, item] of obj.entries.entries()) {
    const at = `entry ${i}`
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw bad(`${at} is not an object`)
    const e = item as Record<string, unknown>
    for (const k of Object.keys(e))
      if (!ENTRY_KEYS.has(k)) throw bad(`${at}: unknown field "${printable(k, 40)}"`)
    if (typeof e.path !== 'string') throw bad(`${at}: "path" is not a string`)
    const path = e.path
    const shown = `${at} "${printable(path)}"`
    const problem = pathProblem(path)
    if (problem) throw bad(`${shown}: the path has ${problem}`, { path })
    if (i > 0 && path <= previous)
      throw bad(
        path === previous
          ? `${shown} is listed twice`
          : `${shown} is out of order (entries are sorted by path)`,
        { path },
      )
    previous = path
    const slash = path.lastIndexOf('/')
    if (slash >= 0) {
      const parent = path.slice(0, slash)
      const type = types.get(parent)
      if (type !== 'dir')
        throw bad(
          type === 'file'
            ? `${shown}: its parent "${printable(parent)}" is a file`
            : `${shown}: its parent folder "${printable(parent)}" is not listed`,
          { path },
        )
    }
    if (e.type !== 'file' && e.type !== 'dir') throw bad(`${shown}: "type" must be "file" or "dir"`)
    if (!isMode(e.mode)) throw bad(`${shown}: "mode" is not a permission mode (0 to 0o777)`)
    if (!isMtime(e.mtimeMs)) throw bad(`${shown}: "mtimeMs" is not a time`)
    if (!Number.isSafeInteger(e.size) || (e.size as number) < 0) throw bad(`${shown}: "size" is not a size`)
    if (e.type === 'dir') {
      if (e.size !== 0) throw bad(`${shown}: a dir has size 0`)
      if (e.digest !== undefined) throw bad(`${shown}: a dir has no digest`)
      entries.push({ path, type: 'dir', size: 0, mode: e.mode, mtimeMs: e.mtimeMs })
    } else {
      if (typeof e.digest !== 'string') throw bad(`${shown}: a file needs a "digest"`)
      let digest: Digest
      try {
        digest = Digest.parse(e.digest)
      } catch {
        throw bad(`${shown}: "digest" is not a sha256 digest`)
      }
      total += e.size as number
      if (!Number.isSafeInteger(total)) throw bad('the files add up to more bytes than can be counted')
      entries.push({
        path,
        type: 'file',
        size: e.size as number,
        mode: e.mode,
        mtimeMs: e.mtimeMs,
        digest: digest.toString(),
      })
    }
    types.set(path, e.type)
  }
  return { version: MANIFEST_VERSION, root: { mode: root.mode, mtimeMs: root.mtimeMs }, entries }
}

export interface BuildProgress {
  /** Files hashed so far, of `files` found by the walk. */
  filesDone: number
  files: number
  bytes: number
  total: number
}

export interface BuildOptions {
  signal?: AbortSignal
  /** Files hashed at once (default 8). */
  concurrency?: number
  onProgress?: (p: BuildProgress) => void
}

/**
 * Walks `root` (lstat: links are not followed) and hashes every file (progress per chunk). Symbolic links, devices,
 * fifos and sockets are refused with INVALID_PATH naming the entry: a directory push carries
 * plain files and folders only, so what is pulled is what was pushed.
 */
export async function buildManifest(root: string, opts: BuildOptions = {}): Promise<Manifest> {
  const rootStat = await stat(root).catch((err) => {
    throw new ShoalError('INVALID_PATH', `cannot read the folder ${root}: ${errnoCode(err) ?? String(err)}`, {
      cause: err,
    })
  })
  if (!rootStat.isDirectory()) throw new ShoalError('INVALID_PATH', `${root} is not a folder`)
  const entries: ManifestEntry[] = []
  const pending: string[] = ['']
  while (pending.length > 0) {
    opts.signal?.throwIfAborted()
    const rel = pending.pop() as string
    const names = await readdir(join(root, rel), { encoding: 'buffer' }).catch((err) => {
      throw unreadable(root, rel, err)
    })
    for (const raw of names) {
      const name = raw.toString('utf8')
      const path = rel ? `${rel}/${name}` : name
      if (!raw.equals(Buffer.from(name, 'utf8')))
        throw new ShoalError(
          'INVALID_PATH',
          `cannot push ${printable(join(root, path))}: the name is not valid UTF-8; rename it`,
        )
      const problem = pathProblem(path)
      if (problem)
        throw new ShoalError('INVALID_PATH', `cannot push ${printable(join(root, path))}: ${problem}`)
      const st = await lstat(join(root, path)).catch((err) => {
        throw unreadable(root, path, err)
      })
      const common = { path, mode: st.mode & MODE_MASK, mtimeMs: st.mtimeMs }
      if (st.isDirectory()) {
        entries.push({ ...common, type: 'dir', size: 0 })
        pending.push(path)
      } else if (st.isFile()) entries.push({ ...common, type: 'file', size: st.size })
      else throw refused(join(root, path), kind(st))
    }
  }
  entries.sort(byPath)
  if (entries.length > MAX_MANIFEST_ENTRIES)
    throw new ShoalError(
      'INVALID_PATH',
      `${root} holds ${entries.length} entries, more than the ${MAX_MANIFEST_ENTRIES} a directory push carries`,
    )
  await hashFiles(root, entries, opts)
  return {
    version: MANIFEST_VERSION,
    root: { mode: rootStat.mode & MODE_MASK, mtimeMs: rootStat.mtimeMs },
    entries,
  }
}

async function hashFiles(root: string, entries: ManifestEntry[], opts: BuildOptions): Promise<void> {
  const files = entries.filter((e) => e.type === 'file')
  const total = files.reduce((n, e) => n + e.size, 0)
  let filesDone = 0
  let bytes = 0
  await eachLimit(files, opts.concurrency ?? 8, async (e) => {
    const { digest, size } = await hashFile(join(root, e.path), opts.signal, (n) => {
      bytes += n
      opts.onProgress?.({ filesDone, files: files.length, bytes, total })
    }).catch((err) => {
      throw unreadable(root, e.path, err)
    })
    // The size hashed is the size pushed: a file growing meanwhile is caught at upload (its digest).
    e.size = size
    e.digest = digest.toString()
    filesDone++
    opts.onProgress?.({ filesDone, files: files.length, bytes, total })
  })
}

/**
 * digestFile with a callback per chunk read: hashing a 20 GB file is progress too, and the
 * `--timeout` watchdog (seconds without progress) must see it move.
 */
export async function hashFile(
  path: string,
  signal: AbortSignal | undefined,
  onBytes: (n: number) => void,
): Promise<{ digest: Digest; size: number }> {
  const hash = createHash('sha256')
  let size = 0
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20, signal })) {
    hash.update(chunk as Buffer)
    size += (chunk as Buffer).length
    onBytes((chunk as Buffer).length)
  }
  return { digest: Digest.fromHash(hash), size }
}

function kind(st: { isSymbolicLink(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (st.isSymbolicLink()) return 'a symbolic link'
  if (st.isFIFO()) return 'a fifo'
  if (st.isSocket()) return 'a socket'
  return 'a device'
}

function refused(path: string, what: string): ShoalError {
  return new ShoalError(
    'INVALID_PATH',
    `cannot push ${printable(path)}: it is ${what}; a directory push carries regular files and folders only`,
    { details: { path } },
  )
}

function unreadable(root: string, rel: string, err: unknown): unknown {
  // A cancelled walk stays a cancellation (the watchdog turns it into its TIMEOUT).
  if (err instanceof ShoalError || isAbortError(err) || isTimeoutError(err)) return err
  const path = join(root, rel)
  return new ShoalError('INVALID_PATH', `cannot read ${printable(path)}: ${errnoCode(err) ?? String(err)}`, {
    cause: err,
    details: { path },
  })
}

/**
 * Runs `fn` over `items`, at most `limit` at a time; the first failure stops new work and is
 * thrown once the running ones have settled (so nothing is still writing when the caller cleans up).
 */
export async function eachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0
  let failed: { err: unknown } | undefined
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++] as T
      try {
        await fn(item)
      } catch (err) {
        failed ??= { err }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker))
  if (failed) throw failed.err
}
