/**
 * Downloads from the CSGW into a temp file next to the destination, resuming with REST after a
 * dropped connection, then checks the size (and the sha256 when the caller knows it) and renames
 * into place: the final name only ever holds a complete, verified file.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open, rename, rm, stat, truncate } from 'node:fs/promises'
import { basename, dirname, join, posix } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { errnoCode, ShoalError, toShoalError } from '../errors/index.js'
import { checkRemoteName, resolveRemoteDir } from './address.js'
import { CsgwBase, type TransferOptions } from './client.js'
import { isTransient } from './errors.js'

export interface DownloadOptions extends TransferOptions {
  /** `sha256:<hex>` or bare hex: checked before the rename. */
  expectedSha256?: string
}

export interface DownloadResult {
  path: string
  size: number
  /** Reconnects that resumed the transfer. */
  resumes: number
  sha256: string
}

/** Hard cap on reconnects of one download, even when each one made progress. */
const MAX_RECONNECTS = 100

export class CsgwClient extends CsgwBase {
  async download(
    dir: string | undefined,
    name: string,
    localPath: string,
    opts: DownloadOptions = {},
  ): Promise<DownloadResult> {
    checkRemoteName(name)
    const remotePath = posix.join(resolveRemoteDir(this.address.dir, dir), name)
    const expected = opts.expectedSha256 === undefined ? undefined : normaliseSha256(opts.expectedSha256)
    const temp = join(
      dirname(localPath),
      `.${basename(localPath)}.shoal-part-${randomBytes(6).toString('hex')}`,
    )
    const retries = this.opts.retries ?? 5
    const backoff = this.opts.backoffMs ?? 250
    let failuresWithoutProgress = 0
    let reconnects = 0
    let resumes = 0
    let total = -1
    try {
      await createEmpty(temp)
      for (;;) {
        const before = await localSize(temp)
        try {
          total = await this.session(`downloading ${remotePath}`, opts.signal, async (c) => {
            const size = await c.size(remotePath)
            let have = await localSize(temp)
            if (have > size) {
              // The remote file shrank (replaced) since the last attempt: start over.
              await truncate(temp, 0)
              have = 0
            }
            if (have > 0) resumes++
            c.trackProgress((info) => opts.onProgress?.({ bytes: have + info.bytes, total: size }))
            if (have < size) await c.downloadTo(temp, remotePath, have)
            c.trackProgress()
            return size
          })
          const got = await localSize(temp)
          if (got === total) break
          // A transfer that ended early with a success reply (the data connection was cut and
          // the server did not notice): resume like after any other drop.
          if (got > total)
            throw new ShoalError(
              'SIZE_MISMATCH',
              `CSGW ${this.server} sent ${got} bytes of ${remotePath}, SIZE said ${total}`,
            )
          throw new ShoalError(
            'CSGW_UNAVAILABLE',
            `CSGW ${this.server} ended ${remotePath} after ${got} of ${total} bytes`,
          )
        } catch (err) {
          const e = toShoalError(err)
          if (!isTransient(e) || opts.signal?.aborted) throw e
          const progressed = (await localSize(temp)) > before
          failuresWithoutProgress = progressed ? 0 : failuresWithoutProgress + 1
          reconnects++
          if (failuresWithoutProgress > retries || reconnects > MAX_RECONNECTS) throw e
          const wait = Math.min(5000, backoff * 2 ** Math.max(0, failuresWithoutProgress - 1))
          this.log?.warn(
            { path: remotePath, reconnects, waitMs: wait, err: e.message },
            'CSGW transfer interrupted; resuming',
          )
          await sleep(wait, undefined, { signal: opts.signal }).catch((abortErr) => {
            throw toShoalError(opts.signal?.reason ?? abortErr)
          })
        }
      }
      const sha256 = await sha256File(temp)
      if (expected !== undefined && sha256 !== expected)
        throw new ShoalError(
          'DIGEST_MISMATCH',
          `the copy of ${remotePath} from CSGW ${this.server} hashes to sha256:${sha256}, expected sha256:${expected}: nothing was written; check the file on the CSGW`,
          { details: { expected: `sha256:${expected}`, actual: `sha256:${sha256}` } },
        )
      await fsyncFile(temp)
      await rename(temp, localPath).catch((err) => {
        throw new ShoalError(
          'IO_ERROR',
          `cannot move the download into ${localPath}: ${errnoCode(err) ?? String(err)}`,
          { cause: err },
        )
      })
      this.log?.info({ path: remotePath, size: total, resumes }, 'downloaded from the CSGW')
      return { path: localPath, size: total, resumes, sha256 }
    } catch (err) {
      await rm(temp, { force: true }).catch(() => {})
      throw err
    }
  }
}

export function normaliseSha256(value: string): string {
  const hex = value.startsWith('sha256:') ? value.slice(7) : value
  if (!/^[0-9a-f]{64}$/.test(hex))
    throw new ShoalError('INVALID_DIGEST', `invalid sha256 digest ${JSON.stringify(value)}`)
  return hex
}

async function createEmpty(path: string): Promise<void> {
  try {
    const fh = await open(path, 'wx')
    await fh.close()
  } catch (err) {
    const code = errnoCode(err)
    const what = code === 'ENOSPC' || code === 'EDQUOT' ? 'INSUFFICIENT_STORAGE' : 'IO_ERROR'
    throw new ShoalError(what, `cannot write next to ${path}: ${code ?? String(err)}`, { cause: err })
  }
}

async function localSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size
  } catch {
    return 0
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, 'r+')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}
