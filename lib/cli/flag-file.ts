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

/** A file name's limit on Linux file systems, in bytes. */
const MAX_NAME_BYTES = 255

/**
 * Refuses, before anything is fetched, a flag file whose name the file system cannot hold:
 * failing after the data was placed would leave it there without its flag.
 */
export function checkFlagName(target: string, suffix = DEFAULT_FLAG_SUFFIX): void {
  const name = basename(flagPath(target, suffix))
  if (Buffer.byteLength(name) > MAX_NAME_BYTES)
    throw new ShoalError(
      'USAGE',
      `the flag file for ${basename(target)} would have a name of ${Buffer.byteLength(name)} bytes, more than ${MAX_NAME_BYTES}: use --new-name with a shorter name, or a shorter flag.suffix in the client config; nothing was fetched`,
    )
}

/**
 * Removes the flag an earlier pull left for `target`, just before the new data replaces it: a
 * consumer waiting for the flag must not take the previous version's flag for this one.
 */
export async function removeStaleFlag(target: string, suffix = DEFAULT_FLAG_SUFFIX): Promise<void> {
  const flag = flagPath(target, suffix)
  try {
    await rm(flag, { force: true })
  } catch (err) {
    throw new ShoalError(
      'IO_ERROR',
      `cannot remove the old flag file ${flag}: ${errnoCode(err) ?? String(err)}`,
      {
        cause: err,
      },
    )
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
