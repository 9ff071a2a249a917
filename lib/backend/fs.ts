/**
 * The local-folder backend (the default). Keys become paths under `root`, one directory per
 * key segment, with every name made safe:
 *
 * - ASCII outside [A-Za-z0-9._-], and '%', are written %XX; non-ASCII stays as UTF-8.
 * - A name never starts with '.' (a leading dot is written %2E), so '.', '..', hidden names
 *   and our own `.tmp/` folder can never be produced by a key.
 * - A segment longer than 200 bytes is cut (between characters) into chunks of at most 200
 *   bytes; every chunk but the last is a directory named `<chunk>+`.
 * - The object itself is the file `<last chunk>~`; a plain directory is a whole segment.
 *   '+' and '~' never occur in an escaped name, so objects, segment directories and chunk
 *   directories can never collide: `a/b` (file `a/b~`) and `a/b/c` (dir `a/b`) coexist.
 *
 * Writes go to `.tmp/`, are fsynced and renamed into place: readers see the old or the new
 * object, never a mix (an open reader keeps the old inode).
 */
import { type FileHandle, mkdir, open, readdir, rename, rm, rmdir, stat, unlink } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { addAbortSignal, type Readable } from 'node:stream'
import { errnoCode, isAbortError, ShoalError } from '../errors/index.js'
import { fsyncDir, tempName, writeFully } from '../store/fsutil.js'
import { type Backend, checkKey, DEFAULT_LIST_LIMIT, type ListPage, type ObjectStat } from './types.js'
import { checkPrefix, resolveRange } from './util.js'

const CHUNK_BYTES = 200
const SAFE = /^[A-Za-z0-9._-]$/
const TMP_DIR = '.tmp'

export class FsBackend implements Backend {
  readonly kind = 'fs'
  private readonly tmp: string

  readonly root: string

  constructor(root: string) {
    this.root = resolve(root)
    this.tmp = join(this.root, TMP_DIR)
  }

  async stat(key: string): Promise<ObjectStat | undefined> {
    checkKey(key)
    try {
      const st = await stat(this.pathOf(key))
      return st.isFile() ? { size: st.size } : undefined
    } catch (err) {
      if (isMissing(err)) return undefined
      throw backendError(err, `stat ${key}`)
    }
  }

  async get(
    key: string,
    opts: { start?: number; end?: number; signal?: AbortSignal } = {},
  ): Promise<Readable> {
    checkKey(key)
    let fh: FileHandle
    try {
      fh = await open(this.pathOf(key), 'r')
    } catch (err) {
      if (isMissing(err)) throw new ShoalError('BLOB_NOT_FOUND', `object not found: ${key}`)
      throw backendError(err, `open ${key}`)
    }
    try {
      const { size } = await fh.stat()
      const range = resolveRange(size, opts, key)
      // An empty object has no valid `end`; createReadStream rejects -1.
      const end = range.end >= range.start ? range.end : undefined
      const stream = fh.createReadStream({ start: range.start, end, highWaterMark: 1 << 20 })
      return opts.signal ? addAbortSignal(opts.signal, stream) : stream
    } catch (err) {
      await fh.close()
      throw backendError(err, `read ${key}`)
    }
  }

  async put(
    key: string,
    body: Readable | Buffer,
    opts: { size?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    checkKey(key)
    const dest = this.pathOf(key)
    await mkdir(this.tmp, { recursive: true })
    const tmp = join(this.tmp, tempName())
    try {
      const fh = await open(tmp, 'w', 0o644)
      let size = 0
      try {
        if (Buffer.isBuffer(body)) {
          await writeFully(fh, body, 0)
          size = body.length
        } else {
          if (opts.signal) addAbortSignal(opts.signal, body)
          for await (const chunk of body) {
            await writeFully(fh, chunk as Buffer, size)
            size += (chunk as Buffer).length
          }
        }
        if (opts.size !== undefined && opts.size !== size) {
          throw new ShoalError('SIZE_MISMATCH', `object ${key}: got ${size} bytes, expected ${opts.size}`)
        }
        await fh.sync()
      } finally {
        await fh.close()
      }
      await this.renameInto(tmp, dest)
    } catch (err) {
      await rm(tmp, { force: true })
      throw backendError(err, `put ${key}`)
    }
  }

  async delete(key: string): Promise<void> {
    checkKey(key)
    const path = this.pathOf(key)
    try {
      await unlink(path)
    } catch (err) {
      if (isMissing(err)) return
      throw backendError(err, `delete ${key}`)
    }
    // Remove directories the delete left empty, so listing stays cheap. A concurrent put that
    // loses its directory here retries its rename (renameInto).
    for (let dir = dirname(path); dir !== this.root && dir.startsWith(this.root); dir = dirname(dir)) {
      try {
        await rmdir(dir)
      } catch {
        break
      }
    }
  }

  async list(
    prefix: string,
    opts: { after?: string; limit?: number; signal?: AbortSignal } = {},
  ): Promise<ListPage> {
    checkPrefix(prefix)
    const limit = opts.limit ?? DEFAULT_LIST_LIMIT
    const after = opts.after === undefined ? undefined : Buffer.from(opts.after)
    // Start in the deepest directory the prefix fully names; prune everything else on the way.
    const lastSlash = prefix.lastIndexOf('/')
    const base = lastSlash < 0 ? '' : prefix.slice(0, lastSlash + 1)
    const startDir =
      base === ''
        ? this.root
        : join(
            this.root,
            ...base
              .slice(0, -1)
              .split('/')
              .flatMap((s) => segmentDirs(s)),
          )
    const found: Buffer[] = []
    await this.walk(startDir, base, prefix, after, found, opts.signal)
    found.sort(Buffer.compare)
    const page = found.slice(0, limit).map((b) => b.toString('utf8'))
    return found.length > limit ? { keys: page, next: page[page.length - 1] as string } : { keys: page }
  }

  private async walk(
    dir: string,
    soFar: string,
    prefix: string,
    after: Buffer | undefined,
    out: Buffer[],
    signal?: AbortSignal,
  ): Promise<void> {
    if (signal?.aborted) throw new ShoalError('ABORTED', 'backend list aborted')
    let entries: string[]
    try {
      entries = await readdir(dir)
    } catch (err) {
      if (isMissing(err)) return
      throw backendError(err, `list ${soFar || '/'}`)
    }
    for (const name of entries) {
      if (name.startsWith('.')) continue
      const kind = name.endsWith('~') ? 'object' : name.endsWith('+') ? 'chunk' : 'dir'
      const decoded = decodeName(kind === 'dir' ? name : name.slice(0, -1))
      if (decoded === undefined) continue
      const key = soFar + decoded + (kind === 'dir' ? '/' : '')
      if (kind === 'object') {
        if (!key.startsWith(prefix)) continue
        const bytes = Buffer.from(key)
        if (after === undefined || Buffer.compare(bytes, after) > 0) out.push(bytes)
        continue
      }
      if (!key.startsWith(prefix) && !prefix.startsWith(key)) continue
      // Every key below starts with `key`: skip the subtree when all of it sorts before `after`.
      if (after !== undefined) {
        const k = Buffer.from(key)
        if (Buffer.compare(k, after) < 0 && !after.subarray(0, k.length).equals(k)) continue
      }
      await this.walk(join(dir, name), key, prefix, after, out, signal)
    }
  }

  private pathOf(key: string): string {
    const segments = key.split('/')
    const last = segments.pop() as string
    const dirs = segments.flatMap((s) => segmentDirs(s))
    const chunks = chunkSegment(last)
    const file = `${chunks.pop() as string}~`
    return join(this.root, ...dirs, ...chunks.map((c) => `${c}+`), file)
  }

  private async renameInto(tmp: string, dest: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      await mkdir(dirname(dest), { recursive: true })
      try {
        await rename(tmp, dest)
        break
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT' || attempt >= 5) throw err
      }
    }
    await fsyncDir(dirname(dest))
  }
}

/** Directory names for a whole (non-final) key segment. */
function segmentDirs(segment: string): string[] {
  const chunks = chunkSegment(segment)
  const last = chunks.pop() as string
  return [...chunks.map((c) => `${c}+`), last]
}

/** Escapes a segment and cuts it into names of at most CHUNK_BYTES bytes, never starting with '.'. */
export function chunkSegment(segment: string): string[] {
  const chunks: string[] = []
  let current = ''
  let bytes = 0
  for (const ch of segment) {
    const code = ch.codePointAt(0) as number
    let token: string
    if (code >= 0x80) token = ch
    else if (SAFE.test(ch) && !(ch === '.' && bytes === 0)) token = ch
    else token = `%${code.toString(16).toUpperCase().padStart(2, '0')}`
    let size = Buffer.byteLength(token)
    if (bytes + size > CHUNK_BYTES) {
      chunks.push(current)
      current = ''
      bytes = 0
      if (ch === '.') {
        token = '%2E'
        size = 3
      }
    }
    current += token
    bytes += size
  }
  chunks.push(current)
  return chunks
}

function decodeName(name: string): string | undefined {
  if (name === '') return undefined
  try {
    return decodeURIComponent(name)
  } catch {
    return undefined
  }
}

function isMissing(err: unknown): boolean {
  const code = errnoCode(err)
  return code === 'ENOENT' || code === 'ENOTDIR'
}

function backendError(err: unknown, what: string): ShoalError {
  if (err instanceof ShoalError) return err
  if (isAbortError(err)) return new ShoalError('ABORTED', `backend ${what}: aborted`, { cause: err })
  const code = errnoCode(err) ?? (err as Error)?.message
  const hint =
    code === 'ENOSPC'
      ? ' (the backend folder is full)'
      : code === 'EACCES'
        ? ' (check the backend folder permissions)'
        : ''
  return new ShoalError('BACKEND_ERROR', `fs backend: cannot ${what}: ${code}${hint}`, { cause: err })
}
