/**
 * Small file-system helpers shared by the store and the fs backend: positional reads and
 * writes that loop until done (a single FileHandle.read/write may be short), directory fsync
 * (a rename is only durable once its directory is synced), and crash-safe whole-file writes.
 */
import { createHash, randomBytes } from 'node:crypto'
import { type FileHandle, open, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { errnoCode, ShoalError } from '../errors/index.js'
import { freeBytesSync, isNoSpaceError, noSpaceMessage } from './space.js'

/** A name that cannot collide with another writer's temp file. */
export function tempName(prefix = 'tmp'): string {
  return `${prefix}-${process.pid}-${randomBytes(9).toString('base64url')}`
}

export async function writeFully(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done)
    if (bytesWritten <= 0) throw new ShoalError('IO_ERROR', 'write made no progress (disk full?)')
    done += bytesWritten
  }
}

/** Reads exactly `length` bytes at `position`; a short file is an IO_ERROR, never silent zeros. */
export async function readFully(
  fh: FileHandle,
  buf: Buffer,
  position: number,
  length = buf.length,
): Promise<Buffer> {
  let done = 0
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done)
    if (bytesRead === 0)
      throw new ShoalError(
        'IO_ERROR',
        `file ended after ${position + done} bytes; ${position + length} expected`,
      )
    done += bytesRead
  }
  return buf
}

/** Makes a rename/create in `dir` durable. Best effort: some file systems refuse to fsync dirs. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined
  try {
    fh = await open(dir, 'r')
    await fh.sync()
  } catch (err) {
    if (!['EISDIR', 'EINVAL', 'EPERM', 'EBADF'].includes(errnoCode(err) ?? '')) throw err
  } finally {
    await fh?.close()
  }
}

/** Writes `data` to `tmpDir`, fsyncs it and renames it to `dest`: readers see old or new, never a part. */
export async function atomicWriteFile(tmpDir: string, dest: string, data: Uint8Array): Promise<void> {
  const tmp = join(tmpDir, tempName())
  try {
    const fh = await open(tmp, 'w', 0o644)
    try {
      await writeFully(fh, data, 0)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, dest)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

/**
 * Maps an unexpected fs error to IO_ERROR with the path in the message, keeping ShoalErrors.
 * A full disk or quota (ENOSPC/EDQUOT) is INSUFFICIENT_STORAGE naming the path (`path`, else
 * the one the error carries) and the space left there: "ENOSPC" alone sends an operator hunting.
 */
export function ioError(err: unknown, what: string, path?: string): ShoalError {
  if (err instanceof ShoalError) return err
  if (err instanceof Error && (err.name === 'AbortError' || errnoCode(err) === 'ABORT_ERR')) {
    return new ShoalError('ABORTED', `${what}: aborted`, { cause: err })
  }
  const code = errnoCode(err)
  if (isNoSpaceError(err)) {
    const where = path ?? (err as NodeJS.ErrnoException).path
    const why = where ? noSpaceMessage(err, where) : `the disk is full (${code})`
    return new ShoalError('INSUFFICIENT_STORAGE', `${what}: ${why}; free space or move the data folder`, {
      cause: err,
      details: where ? { path: where, freeBytes: freeBytesSync(where) } : undefined,
    })
  }
  return new ShoalError('IO_ERROR', `${what}: ${code ?? (err as Error)?.message ?? String(err)}`, {
    cause: err,
  })
}

const HASH_CHUNK = 1 << 20

/**
 * sha256 (hex) of the first `length` bytes behind `fh`, read positionally in 1 MiB chunks.
 * `signal` is checked between chunks (ABORTED), so hashing a big file stops promptly.
 */
export async function hashHandle(fh: FileHandle, length: number, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256')
  const buf = Buffer.allocUnsafe(Math.min(HASH_CHUNK, Math.max(length, 1)))
  for (let pos = 0; pos < length; pos += buf.length) {
    if (signal?.aborted) throw new ShoalError('ABORTED', 'hashing aborted', { cause: signal.reason })
    const n = Math.min(buf.length, length - pos)
    await readFully(fh, buf, pos, n)
    hash.update(buf.subarray(0, n))
  }
  return hash.digest('hex')
}
