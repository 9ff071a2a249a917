/**
 * PullCLI pull of one file: the local agent resolves the tag and downloads the blob through the
 * swarm; the bytes land in a temp file in the destination folder, are checked against the
 * digest, fsynced, and only then take their final name (cover: atomic rename; not covering: a
 * link that never replaces). Nothing half-written ever has the final name, and the flag file
 * (`--has-flag F`) is written only after that.
 *
 * Everything that can be refused locally (a bad name, an unwritable folder, a taken name with
 * `--is-cover false`) is refused before the agent is asked anything. `--timeout` counts seconds
 * without progress. When the swarm cannot serve (agent down, tag unknown, no progress) and a
 * CSGW is given, the file comes from the CSGW instead, under the same rules.
 */
import { lstat, stat } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { AgentClient } from '../agent/client/index.js'
import { DEFAULT_NAMESPACE, Digest, Tag } from '../core/index.js'
import { isCsgwAddress, parseCsgwAddress } from '../csgw/index.js'
import { ShoalError, toShoalError } from '../errors/index.js'
import { csgwFetchInto } from './csgw.js'
import { checkName, chooseTarget, finishFile, holdsBytes, prepareDir, tempBeside } from './destination.js'
import { type FetchProgress, fetchBlob, peerBytes } from './fetch.js'
import { checkFlagName, DEFAULT_FLAG, type FlagOptions, removeStaleFlag, writeFlag } from './flag-file.js'
import { type Progress, withProgressTimeout } from './watchdog.js'

/** `--timeout` of PullCLI when none is given: seconds without progress. */
export const DEFAULT_PULL_TIMEOUT_SECONDS = 10

export interface PullOptions {
  tag: string | Tag
  /** The folder to write into (created when missing). */
  dstPath: string
  /** The agent, host:port. */
  dstHost: string
  namespace?: string
  /** The digest the tag points at, when the caller resolved it already: the agent is not asked again. */
  digest?: Digest | string
  /** Replace an existing file (default true). */
  isCover?: boolean
  /** With isCover false: the name to write under when the file's own name is taken. */
  newName?: string
  /** 'F': write the flag file after the data; 'N' (default): none. */
  hasFlag?: 'F' | 'N'
  flag?: FlagOptions
  /** Seconds without progress before giving up (default 10; 0 = never). */
  timeoutSeconds?: number
  onProgress?: (p: FetchProgress) => void
  /** ftp://host[:port]/dir: where to fetch `tag.fileName` from when the swarm cannot serve. */
  csgw?: string
  /**
   * The swarm failed already (the caller's resolve): go straight to the CSGW instead of asking
   * the agent again and waiting out a second timeout.
   */
  swarmFailure?: ShoalError
  /** One line for the user (stderr) when falling back to the CSGW. */
  notice?: (line: string) => void
  /** Permission bits and mtime to give the file (from the tag's metadata). */
  mode?: number
  mtimeMs?: number
  /** Caps the agent's download of the blob from peers, bytes/s (a job's bandwidth class; 0 = none). */
  ingressBytesPerSec?: number
  /** Sent to the agent as a bearer token (an agent bound beyond loopback asks for one). */
  agentToken?: string
  signal?: AbortSignal
}

export type PullSource = 'swarm' | 'csgw' | 'local'

export interface PullResult {
  tag: Tag
  digest: Digest
  size: number
  path: string
  seconds: number
  source: PullSource
  /** The flag file written (hasFlag 'F'). */
  flag?: string
  /** Why the swarm did not serve it (source 'csgw' after a fallback). */
  fallbackReason?: string
}

/** The swarm failures a CSGW can stand in for; local ones (a full disk, a taken name) it cannot. */
const FALLBACK_CODES = new Set<string>([
  'UNAVAILABLE',
  'TAG_NOT_FOUND',
  'BLOB_NOT_FOUND',
  'NOT_FOUND',
  'TIMEOUT',
])

export function isFallbackCode(code: string): boolean {
  return FALLBACK_CODES.has(code)
}

export async function pull(opts: PullOptions): Promise<PullResult> {
  const started = Date.now()
  const tag = typeof opts.tag === 'string' ? Tag.parse(opts.tag) : opts.tag
  if (opts.newName !== undefined) checkName(opts.newName, '--new-name')
  if (opts.csgw !== undefined && !isCsgwAddress(opts.csgw))
    throw new ShoalError('USAGE', 'the CSGW to fall back to must be an ftp:// or ftps:// address')
  const known = opts.digest === undefined ? undefined : Digest.parse(opts.digest.toString())
  const dir = await prepareDir(opts.dstPath)
  const isCover = opts.isCover ?? true
  const target = await chooseTarget(dir, tag.fileName, { isCover, newName: opts.newName })
  // place() refuses to cover a folder with a file; say so before the download, not after it.
  if ((await lstat(target).catch(() => undefined))?.isDirectory())
    throw new ShoalError(
      'ALREADY_EXISTS',
      `${target} is a directory; a file cannot replace it; nothing was written`,
      {
        details: { path: target },
      },
    )
  const flagSuffix = (opts.flag ?? DEFAULT_FLAG).suffix
  if (opts.hasFlag === 'F') checkFlagName(target, flagSuffix)
  const beforePlace = opts.hasFlag === 'F' ? () => removeStaleFlag(target, flagSuffix) : undefined
  const seconds = opts.timeoutSeconds ?? DEFAULT_PULL_TIMEOUT_SECONDS

  // What the swarm path learnt before it failed: the digest lets the CSGW's copy be verified.
  const learnt: { digest?: Digest } = { digest: known }
  let got: { digest: Digest; size: number; source: PullSource }
  let fallbackReason: string | undefined
  try {
    if (opts.swarmFailure) throw opts.swarmFailure
    got = await withProgressTimeout(
      `pull of ${tag}`,
      seconds,
      (signal, progress) =>
        fromSwarm(tag, learnt, target, { isCover, beforePlace }, opts, seconds, signal, progress),
      opts.signal,
    )
  } catch (err) {
    const e = toShoalError(err)
    if (opts.csgw === undefined || !isFallbackCode(e.code) || opts.signal?.aborted) throw err
    fallbackReason = e.message
    const csgw = opts.csgw
    // The redacted address: one given as ftp://user:password@… must not reach the terminal.
    const server = parseCsgwAddress(csgw).redacted
    opts.notice?.(
      `the swarm could not serve ${tag} (${e.message}); fetching ${tag.fileName} from CSGW ${server}`,
    )
    const r = await csgwFetchInto({
      srcHost: csgw,
      name: tag.fileName,
      dir,
      target,
      isCover,
      expectedDigest: learnt.digest,
      timeoutSeconds: seconds,
      onProgress: opts.onProgress,
      mode: opts.mode,
      mtimeMs: opts.mtimeMs,
      beforePlace,
      signal: opts.signal,
    }).catch((csgwErr) => {
      // Both sources failed: the user needs both reasons, not only the last one.
      const c = toShoalError(csgwErr)
      throw new ShoalError(c.code, `${c.message} (the CSGW was the fallback: ${e.message})`, {
        cause: csgwErr,
        details: { ...c.details, swarmReason: e.message },
      })
    })
    got = { digest: Digest.parse(r.digest), size: r.size, source: r.source }
  }
  const result: PullResult = {
    tag,
    digest: got.digest,
    size: got.size,
    path: target,
    seconds: 0,
    source: got.source,
  }
  if (fallbackReason !== undefined) result.fallbackReason = fallbackReason
  if (opts.hasFlag === 'F')
    result.flag = await writeFlag(
      target,
      { digest: got.digest.toString(), size: got.size, tag: tag.toString() },
      opts.flag ?? DEFAULT_FLAG,
    )
  result.seconds = (Date.now() - started) / 1000
  return result
}

/** The swarm path, under the watchdog: every reply and every byte that moves is progress. */
async function fromSwarm(
  tag: Tag,
  learnt: { digest?: Digest },
  target: string,
  place: { isCover: boolean; beforePlace?: () => Promise<void> },
  opts: PullOptions,
  seconds: number,
  signal: AbortSignal,
  progress: Progress,
): Promise<{ digest: Digest; size: number; source: PullSource }> {
  // No deadline of the client's own: the watchdog is the deadline, and the blob's answer comes
  // only once the agent has the whole blob (which may take far longer than any fixed bound).
  const agent = new AgentClient(opts.dstHost, {
    timeoutMs: 0,
    ingressBytesPerSec: opts.ingressBytesPerSec,
    token: opts.agentToken,
  })
  const digest = learnt.digest ?? (await agent.resolve(tag, signal))
  learnt.digest = digest
  progress.touch()
  if (place.isCover && (await holdsBytes(target, digest, -1, { signal, onBytes: () => progress.touch() }))) {
    return { digest, size: (await stat(target)).size, source: 'local' }
  }
  const ns = opts.namespace ?? DEFAULT_NAMESPACE
  const tmpPath = tempBeside(dirname(target), basename(target))
  let last = { phase: '', bytes: -1, peers: -1 }
  const { size } = await fetchBlob(agent, ns, digest, tmpPath, {
    signal,
    // Several looks at the swarm per timeout window, so a download that moves is seen moving.
    pollMs: seconds ? Math.min(500, seconds * 250) : 500,
    onProgress: (p) => {
      // A poll that reports the same bytes again is a reply, not progress: a stalled swarm
      // download must still time out.
      const peers = peerBytes(p)
      if (p.phase !== last.phase || p.bytes > last.bytes || peers > last.peers) {
        progress.touch()
        last = { phase: p.phase, bytes: p.bytes, peers }
      }
      opts.onProgress?.(p)
    },
  })
  progress.touch()
  await finishFile(tmpPath, target, { ...place, mode: opts.mode, mtimeMs: opts.mtimeMs, signal })
  return { digest, size, source: 'swarm' }
}
