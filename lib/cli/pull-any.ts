/**
 * PullCLI's Shoal path: the agent says what the tag is (a file or a directory manifest, its
 * description, mode and mtime), then the file is pulled (with the CSGW fallback) or the tree is
 * materialised. `--res-type` is a check against what the tag says, not a way to reinterpret it.
 */
import { AgentClient, type ResolvedTagInfo } from '../agent/client/index.js'
import type { Tag } from '../core/index.js'
import { ShoalError, toShoalError } from '../errors/index.js'
import { chooseTarget, prepareDir } from './destination.js'
import { pullDirectory } from './dir-pull.js'
import type { FetchProgress } from './fetch.js'
import type { FlagOptions } from './flag-file.js'
import { isFallbackCode, pull } from './pull.js'
import { withProgressTimeout } from './watchdog.js'

export interface PullAnyOptions {
  tag: Tag
  dstPath: string
  dstHost: string
  timeoutSeconds: number
  isCover: boolean
  newName?: string
  hasFlag: boolean
  flag: FlagOptions
  resType?: 'file' | 'directory'
  csgw?: string
  onProgress?: (p: FetchProgress) => void
  notice?: (line: string) => void
  /** Caps the agent's downloads of the blobs from peers, bytes/s (a job's bandwidth class; 0 = none). */
  ingressBytesPerSec?: number
  /** Sent to the agent as a bearer token (an agent bound beyond loopback asks for one). */
  agentToken?: string
  /** Aborts the pull (a cancelled job task): temp files are removed, nothing takes the final name. */
  signal?: AbortSignal
}

export interface PulledResult {
  tag: Tag
  digest: { toString(): string }
  size: number
  path: string
  seconds: number
  source: 'swarm' | 'csgw' | 'local'
  flag?: string
  files?: number
  fetchedFiles?: number
  localFiles?: number
  desc?: string
  fallbackReason?: string
}

export async function pullAny(o: PullAnyOptions): Promise<PulledResult> {
  // What can be refused here is refused before the agent is asked anything (pull() and
  // pullDirectory() check again: the folder may change meanwhile).
  const dir = await prepareDir(o.dstPath)
  await chooseTarget(dir, o.tag.fileName, { isCover: o.isCover, newName: o.newName })
  // The watchdog is the deadline (--timeout 0: none), not a fixed one of the client's.
  const agent = new AgentClient(o.dstHost, { timeoutMs: 0, token: o.agentToken })
  let info: ResolvedTagInfo | undefined
  let swarmFailure: ShoalError | undefined
  try {
    info = await withProgressTimeout(
      `pull of ${o.tag}`,
      o.timeoutSeconds,
      (signal) => agent.resolveInfo(o.tag, signal),
      o.signal,
    )
  } catch (err) {
    // Without the tag's type the CSGW can only stand in for a file: a CSGW holds files.
    const e = toShoalError(err)
    if (o.signal?.aborted) throw err
    if (!o.csgw || o.resType === 'directory' || !isFallbackCode(e.code)) throw err
    swarmFailure = e
  }
  const type = info?.type ?? 'file'
  if (info && o.resType && o.resType !== type)
    throw new ShoalError(
      'USAGE',
      `${o.tag} is a ${type}, not a ${o.resType}: pull it with --res-type ${type} (or leave --res-type out)`,
    )
  if (info && type === 'directory') {
    const r = await pullDirectory({
      tag: o.tag,
      manifestDigest: info.digest,
      dstPath: o.dstPath,
      dstHost: o.dstHost,
      isCover: o.isCover,
      newName: o.newName,
      hasFlag: o.hasFlag,
      flag: o.flag,
      timeoutSeconds: o.timeoutSeconds,
      onProgress: o.onProgress,
      ingressBytesPerSec: o.ingressBytesPerSec,
      agentToken: o.agentToken,
      signal: o.signal,
    })
    return { ...r, ...(info.desc ? { desc: info.desc } : {}) }
  }
  const r = await pull({
    tag: o.tag,
    dstPath: o.dstPath,
    dstHost: o.dstHost,
    digest: info?.digest,
    isCover: o.isCover,
    newName: o.newName,
    hasFlag: o.hasFlag ? 'F' : 'N',
    flag: o.flag,
    timeoutSeconds: o.timeoutSeconds,
    onProgress: o.onProgress,
    csgw: o.csgw,
    swarmFailure,
    notice: o.notice,
    mode: info?.mode,
    mtimeMs: info?.mtimeMs,
    ingressBytesPerSec: o.ingressBytesPerSec,
    agentToken: o.agentToken,
    signal: o.signal,
  })
  return { ...r, ...(info?.desc ? { desc: info.desc } : {}) }
}
