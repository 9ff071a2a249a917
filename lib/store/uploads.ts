/**
 * In-progress chunked uploads (`uploads/<uid>`), for the origin. Each chunk is all or nothing:
 * a failed append is truncated back, so a client can always resend the chunk it was sending.
 * Only one request at a time may write or commit a given upload.
 */
import { randomBytes } from 'node:crypto'
import { type FileHandle, open, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { addAbortSignal, type Readable } from 'node:stream'
import type { Digest } from '../core/index.js'
import { errnoCode, ShoalError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import { hashHandle, ioError, writeFully } from './fsutil.js'

const UID_RE = /^[A-Za-z0-9_-]{1,64}$/

export class Uploads {
  /** Uploads with an append or commit in progress. */
  private readonly busy = new Set<string>()

  constructor(
    private readonly dir: string,
    private readonly log: Logger | undefined,
  ) {}

  async create(): Promise<string> {
    const uid = randomBytes(18).toString('base64url')
    try {
      await (await open(this.path(uid), 'wx', 0o644)).close()
    } catch (err) {
      throw ioError(err, 'cannot create an upload')
    }
    return uid
  }

  async offset(uid: string): Promise<number> {
    try {
      return (await stat(this.path(uid))).size
    } catch (err) {
      throw this.notFound(err, uid)
    }
  }

  async append(
    uid: string,
    offset: number,
    body: Readable,
    length: number,
    signal?: AbortSignal,
  ): Promise<number> {
    const path = this.path(uid)
    this.lock(uid)
    let fh: FileHandle | undefined
    try {
      try {
        fh = await open(path, 'r+')
      } catch (err) {
        throw this.notFound(err, uid)
      }
      const current = (await fh.stat()).size
      if (offset !== current) {
        throw new ShoalError(
          'INVALID_RANGE',
          `upload ${uid} is at offset ${current}; a chunk at ${offset} cannot be appended`,
          {
            details: { offset: current },
          },
        )
      }
      if (signal) addAbortSignal(signal, body)
      let written = 0
      try {
        for await (const chunk of body) {
          const buf = chunk as Buffer
          if (written + buf.length > length) {
            throw new ShoalError(
              'SIZE_MISMATCH',
              `chunk body is longer than the ${length} bytes its range announced`,
            )
          }
          await writeFully(fh, buf, offset + written)
          written += buf.length
        }
        if (written !== length) {
          throw new ShoalError(
            'SIZE_MISMATCH',
            `chunk body ended after ${written} of the ${length} bytes its range announced`,
          )
        }
      } catch (err) {
        await fh.truncate(offset).catch(() => undefined)
        throw ioError(err, `upload ${uid}`, path)
      }
      return offset + length
    } finally {
      await fh?.close()
      this.busy.delete(uid)
    }
  }

  /**
   * Verifies the upload against `expected`; on a match fsyncs it and hands its path to `accept`
   * (which moves it into the cache), on a mismatch deletes it. Aborted (ABORTED) before it is
   * accepted, the upload stays as it was and can be committed again.
   */
  async commit(
    uid: string,
    expected: Digest,
    accept: (path: string) => Promise<void>,
    signal?: AbortSignal,
  ): Promise<{ size: number }> {
    const path = this.path(uid)
    this.lock(uid)
    try {
      let fh: FileHandle
      try {
        fh = await open(path, 'r+')
      } catch (err) {
        throw this.notFound(err, uid)
      }
      let size: number
      let actual: string
      try {
        size = (await fh.stat()).size
        actual = await hashHandle(fh, size, signal)
        if (actual === expected.hex) await fh.sync()
      } finally {
        await fh.close()
      }
      if (actual !== expected.hex) {
        await rm(path, { force: true })
        this.log?.warn(
          { uid, expected: expected.toString(), actual: `sha256:${actual}` },
          'upload failed sha256 verification; discarded',
        )
        throw new ShoalError(
          'DIGEST_MISMATCH',
          `uploaded data hashes to sha256:${actual}, not ${expected}; the upload was discarded, check the file and upload it again`,
          { details: { expected: expected.toString(), actual: `sha256:${actual}` } },
        )
      }
      if (signal?.aborted)
        throw new ShoalError('ABORTED', `commit of upload ${uid} aborted`, { cause: signal.reason })
      await accept(path)
      return { size }
    } finally {
      this.busy.delete(uid)
    }
  }

  async delete(uid: string): Promise<void> {
    await rm(this.path(uid), { force: true })
  }

  /** Deletes uploads nobody touched for `maxAgeMs` (abandoned by their clients). */
  async purge(maxAgeMs: number): Promise<number> {
    let removed = 0
    const cutoff = Date.now() - maxAgeMs
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (this.busy.has(name)) continue
      const path = join(this.dir, name)
      const st = await stat(path).catch(() => undefined)
      if (st && st.mtimeMs < cutoff) {
        await rm(path, { force: true })
        removed++
      }
    }
    if (removed > 0) this.log?.info({ removed }, 'removed abandoned uploads')
    return removed
  }

  private path(uid: string): string {
    if (typeof uid !== 'string' || !UID_RE.test(uid)) {
      throw new ShoalError('BAD_REQUEST', 'invalid upload id: expected 1-64 of A-Z a-z 0-9 _ -')
    }
    return join(this.dir, uid)
  }

  private lock(uid: string): void {
    if (this.busy.has(uid)) {
      throw new ShoalError(
        'UPLOAD_CONFLICT',
        `upload ${uid} is already being written or committed; wait for that request to end`,
      )
    }
    this.busy.add(uid)
  }

  private notFound(err: unknown, uid: string): ShoalError {
    if (errnoCode(err) === 'ENOENT') {
      return new ShoalError(
        'UPLOAD_NOT_FOUND',
        `upload ${uid} does not exist (committed, aborted or expired); start a new upload`,
      )
    }
    return ioError(err, `upload ${uid}`)
  }
}
