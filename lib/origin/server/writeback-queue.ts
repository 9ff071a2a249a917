/**
 * The write-back queue on the origin's disk: one small JSON mark per (namespace, blob) under
 * <dataDir>/writeback/, written atomically (temp file in <dataDir>/tmp, fsync, rename, fsync of
 * the folder). A mark exists from before an upload is acknowledged until the backend holds the
 * whole blob, so a crash or restart loses no write-back: load() finds every mark again.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Digest, parseNamespace } from '../../core/index.js'
import { errnoCode, ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { atomicWriteFile, fsyncDir, ioError } from '../../store/fsutil.js'

/** A blob waiting to be written back to `ns` in the backend. */
export interface Mark {
  ns: string
  digest: Digest
  size: number
  /** When the blob was first queued (ms since the epoch). */
  queuedAt: number
  /** Failed attempts so far. */
  attempts: number
}

const MARK_FILE = /^([0-9a-f]{64})-([A-Za-z0-9][A-Za-z0-9._-]{0,127})\.json$/

/** The key of a mark in maps: one per namespace and digest. */
export function markKey(ns: string, digest: Digest): string {
  return `${ns}/${digest.hex}`
}

export class MarkStore {
  readonly dir: string

  constructor(
    dataDir: string,
    private readonly tmpDir: string,
    private readonly log: Logger,
  ) {
    this.dir = join(dataDir, 'writeback')
  }

  /** Writes (or rewrites) the mark durably: it survives a crash once this resolves. */
  async save(mark: Mark): Promise<void> {
    const path = this.pathOf(mark.ns, mark.digest)
    const body = JSON.stringify({
      ns: mark.ns,
      digest: mark.digest.toString(),
      size: mark.size,
      queuedAt: new Date(mark.queuedAt).toISOString(),
      attempts: mark.attempts,
    })
    try {
      await mkdir(this.dir, { recursive: true })
      await mkdir(this.tmpDir, { recursive: true })
      await atomicWriteFile(this.tmpDir, path, Buffer.from(`${body}\n`))
      await fsyncDir(this.dir)
    } catch (err) {
      throw ioError(err, `cannot write the write-back mark of ${mark.digest}`, path)
    }
  }

  /** Removes the mark (the backend has the blob, or it was deleted); absent is fine. */
  async remove(ns: string, digest: Digest): Promise<void> {
    const path = this.pathOf(ns, digest)
    try {
      await rm(path, { force: true })
      await fsyncDir(this.dir)
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return
      throw ioError(err, `cannot remove the write-back mark of ${digest}`, path)
    }
  }

  /** Every mark on disk. An unreadable one is logged and skipped (kept on disk for an operator). */
  async load(): Promise<Mark[]> {
    let names: string[]
    try {
      await mkdir(this.dir, { recursive: true })
      names = await readdir(this.dir)
    } catch (err) {
      throw ioError(err, 'cannot read the write-back queue', this.dir)
    }
    const marks: Mark[] = []
    for (const name of names.sort()) {
      const m = MARK_FILE.exec(name)
      if (!m) continue
      try {
        const raw = JSON.parse(await readFile(join(this.dir, name), 'utf8')) as Record<string, unknown>
        const digest = Digest.parse(String(raw.digest))
        const ns = parseNamespace(String(raw.ns))
        const size = Number(raw.size)
        if (digest.hex !== m[1] || ns !== m[2] || !Number.isSafeInteger(size) || size < 0) {
          throw new ShoalError('IO_ERROR', 'the mark does not match its file name')
        }
        const queuedAt = Date.parse(String(raw.queuedAt))
        const attempts = Number(raw.attempts)
        marks.push({
          ns,
          digest,
          size,
          queuedAt: Number.isFinite(queuedAt) ? queuedAt : Date.now(),
          attempts: Number.isSafeInteger(attempts) && attempts >= 0 ? attempts : 0,
        })
      } catch (err) {
        this.log.error(
          { err, file: join(this.dir, name) },
          'unreadable write-back mark skipped: check that the backend holds this blob, then delete the file',
        )
      }
    }
    return marks
  }

  private pathOf(ns: string, digest: Digest): string {
    return join(this.dir, `${digest.hex}-${parseNamespace(ns)}.json`)
  }
}
