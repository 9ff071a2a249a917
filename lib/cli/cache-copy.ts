/**
 * The fast way a blob reaches PullCLI's temp file: the local agent says where the verified blob
 * is in its cache, and the kernel copies it (copy_file_range; a reflink where the file system
 * has one) instead of the bytes going agent → HTTP → PullCLI → hash → file. The cache file was
 * verified against the sha256 when it entered the cache and is never written again, so the copy
 * is not hashed again; its size is checked. It is always a copy, never a link: nothing a user
 * does to the pulled file can change the agent's cache.
 *
 * When the cache file cannot be opened from here (the agent runs as another user or in another
 * container, or evicted it meanwhile) or the agent is too old for the route, the caller streams.
 */
import { constants } from 'node:fs'
import { copyFile, rm, stat } from 'node:fs/promises'
import type { AgentClient } from '../agent/client/index.js'
import type { Digest } from '../core/index.js'
import { errnoCode, isShoalError, ShoalError } from '../errors/index.js'
import type { FetchProgress } from './fetch.js'

/** Errors opening or copying the cache file that mean "stream it instead". */
const NOT_FROM_HERE = new Set([
  'ENOENT',
  'EACCES',
  'EPERM',
  'EXDEV',
  'ENOTSUP',
  'EOPNOTSUPP',
  'EINVAL',
  'ELOOP',
])

/** Where the agent has the blob, or undefined when it has no such route (an older agent). */
export async function cacheLocation(
  agent: AgentClient,
  ns: string,
  digest: Digest,
  signal: AbortSignal | undefined,
): Promise<{ size: number; path: string } | undefined> {
  try {
    return await agent.blobFile(ns, digest, { signal, timeoutMs: 0 })
  } catch (err) {
    // 'no route': an agent from before this route. Anything else (the blob unavailable, the
    // agent down) is the pull's answer, exactly as the streaming path would give it.
    if (isShoalError(err, 'NOT_FOUND')) return undefined
    throw err
  }
}

/**
 * Copies the cache file to `tmpPath` (created exclusively). True when done; false when the file
 * cannot be copied from here (nothing is left at tmpPath). The copy reports its growth as
 * progress, so a long copy of a large file is seen moving.
 */
export async function copyFromCache(
  from: { size: number; path: string },
  tmpPath: string,
  onProgress: ((p: FetchProgress) => void) | undefined,
): Promise<boolean> {
  const watch = onProgress ? watchGrowth(tmpPath, from.size, onProgress) : () => {}
  try {
    await copyFile(from.path, tmpPath, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE)
  } catch (err) {
    watch()
    // A tmpPath that already existed is not ours to remove (EEXIST is a real error).
    if (errnoCode(err) === 'EEXIST') throw err
    await rm(tmpPath, { force: true })
    if (NOT_FROM_HERE.has(errnoCode(err) ?? '')) return false
    throw err
  }
  watch()
  const size = (await stat(tmpPath)).size
  if (size !== from.size) {
    await rm(tmpPath, { force: true })
    throw new ShoalError(
      'SIZE_MISMATCH',
      `the copy of the agent's cache file ${from.path} has ${size} bytes, the blob has ${from.size}; nothing was written`,
    )
  }
  onProgress?.({ phase: 'copy', bytes: size, total: from.size })
  return true
}

/** Reports the destination's size every 250 ms until stopped (copy_file_range has no callback). */
function watchGrowth(path: string, total: number, report: (p: FetchProgress) => void): () => void {
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  const tick = async () => {
    const size = await stat(path).then(
      (s) => s.size,
      () => undefined,
    )
    if (stopped) return
    if (size !== undefined) report({ phase: 'copy', bytes: size, total })
    timer = setTimeout(tick, 250)
  }
  timer = setTimeout(tick, 250)
  return () => {
    stopped = true
    clearTimeout(timer)
  }
}
