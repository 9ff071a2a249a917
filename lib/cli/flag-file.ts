/**
 * Flag files (`--has-flag F`), the convention the FTP-era producers and consumers share: a file
 * (or folder) X is complete once `X<suffix>` exists beside it (suffix `.flag` by default).
 * PushCLI waits for the producer's flag before reading X; PullCLI writes its own flag after X is
 * in place and durable, so a consumer that waits for the flag never reads a partial X.
 */
import { randomBytes } from 'node:crypto'
import { lstat, open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { errnoCode, ShoalError } from '../errors/index.js'

export const DEFAULT_FLAG_SUFFIX = '.flag'

/** What a written flag file holds: nothing, the digest line (sha256sum style), or one JSON object. */
export type FlagContent = 'empty' | 'digest' | 'json'

export interface FlagOptions {
  suffix: string
  content: FlagContent
}

export const DEFAULT_FLAG: FlagOptions = { suffix: DEFAULT_FLAG_SUFFIX, content: 'empty' }

export function flagPath(path: string, suffix = DEFAULT_FLAG_SUFFIX): string {
  return path + suffix
}

/**
 * Waits until `path<suffix>` exists, checking every `pollMs`; the caller's signal bounds the
 * wait (its TIMEOUT names the flag). A flag that is a folder or a link counts: only existence
 * is the producer's signal.
 */
export async function waitForFlag(
  path: string,
  opts: { suffix?: string; signal?: AbortSignal; pollMs?: number } = {},
): Promise<void> {
  const flag = flagPath(path, opts.suffix)
  for (;;) {
    try {
      await lstat(flag)
      return
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err
    }
    if (opts.signal?.aborted)
      throw new ShoalError('TIMEOUT', `waiting for the flag file ${flag}`, { cause: opts.signal.reason })
    await sleep(opts.pollMs ?? 200, opts.signal)
  }
}

/**
 * Writes `path<suffix>` for a file or folder now in place, durably and under its final name
 * only when complete (temp file, fsync, rename), so the flag is never seen half-written.
 */
export async function writeFlag(
  path: string,
  what: { digest: string; size: number; tag?: string },
  opts: FlagOptions = DEFAULT_FLAG,
): Promise<string> {
  const flag = flagPath(path, opts.suffix)
  const body =
    opts.content === 'empty'
      ? ''
      : opts.content === 'digest'
        ? `${what.digest.replace(/^sha256:/, '')}  ${basename(path)}\n`
        : `${JSON.stringify({ name: basename(path), digest: what.digest, size: what.size, tag: what.tag })}\n`
  const tmp = join(
    dirname(flag),
    `.${basename(flag).slice(0, 40)}.shoal-${randomBytes(4).toString('hex')}.tmp`,
  )
  try {
    const fh = await open(tmp, 'wx')
    try {
      await fh.writeFile(body)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, flag)
  } catch (err) {
    await rm(tmp, { force: true })
    throw new ShoalError('IO_ERROR', `cannot write the flag file ${flag}: ${errnoCode(err) ?? String(err)}`, {
      cause: err,
    })
  }
  return flag
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
    function done() {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
  })
}
