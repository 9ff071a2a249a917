/**
 * PullCLI pull: the local agent resolves the tag and downloads the blob through the swarm;
 * the bytes land in a temp file in the destination folder, are checked against the digest,
 * and only then renamed to the file's own name. Nothing half-written ever has the final name.
 */
import { AgentClient } from '../agent/client/index.js'
import { DEFAULT_NAMESPACE, type Digest, Tag } from '../core/index.js'
import { clientTimeoutMs, withTimeout } from './common.js'
import { chooseTarget, place, prepareDir, tempBeside } from './destination.js'
import { fetchBlob } from './fetch.js'

export interface PullOptions {
  tag: string
  dstPath: string
  dstHost: string
  namespace?: string
  timeoutSeconds?: number
}

export interface PullResult {
  tag: Tag
  digest: Digest
  size: number
  path: string
  seconds: number
}

export async function pull(opts: PullOptions): Promise<PullResult> {
  const tag = Tag.parse(opts.tag)
  const dir = await prepareDir(opts.dstPath)
  return withTimeout(`pull of ${tag}`, opts.timeoutSeconds, (signal) => pullInto(dir, tag, opts, signal))
}

async function pullInto(
  dir: string,
  tag: Tag,
  opts: PullOptions,
  signal: AbortSignal | undefined,
): Promise<PullResult> {
  const started = Date.now()
  const agent = new AgentClient(opts.dstHost, { timeoutMs: clientTimeoutMs(opts.timeoutSeconds, 3_600_000) })
  const finalPath = await chooseTarget(dir, tag.fileName, { isCover: true })
  const digest = await agent.resolve(tag, signal)
  const ns = opts.namespace ?? DEFAULT_NAMESPACE
  const tmpPath = tempBeside(dir, tag.fileName)
  const { size } = await fetchBlob(agent, ns, digest, tmpPath, { signal })
  await place(tmpPath, finalPath, true)
  return { tag, digest, size, path: finalPath, seconds: (Date.now() - started) / 1000 }
}
