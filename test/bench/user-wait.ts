/**
 * The time the user waits for one pull: PullCLI (the built binary) from command start to the
 * verified file at its final name, against the agent's own download of the same blob (from its
 * progress record) and a plain `cp` of the same file, in the same run. Then, with the blob in the
 * agent's cache, what the last step costs each way: the kernel's copy of the cache file (today's
 * path) against streaming it over HTTP and hashing it (the path before).
 */
import { execFile } from 'node:child_process'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { AgentClient } from '../../lib/agent/client/index.js'
import { fetchBlob } from '../../lib/cli/fetch.js'
import { DEFAULT_NAMESPACE, type Digest } from '../../lib/core/index.js'
import { ShoalError } from '../../lib/errors/index.js'
import { distCmd } from './procs.js'

const run = promisify(execFile)

export interface UserWaitResult {
  /** PullCLI, command start → file in place (a cold agent: the download included). */
  pullSeconds: number
  /** The agent's download of the same blob (started → verified in its cache). */
  agentSeconds: number
  /** `cp` of the source file. */
  cpSeconds: number
  /** With the blob cached: the last step alone, by copy and by stream. */
  lastStepCopySeconds: number
  lastStepStreamSeconds: number
}

export async function measureUserWait(opts: {
  agent: AgentClient
  agentUrl: string
  tag: string
  digest: Digest
  file: string
  dir: string
}): Promise<UserWaitResult> {
  const out = join(opts.dir, 'user-wait')
  await rm(out, { recursive: true, force: true })
  await mkdir(out, { recursive: true })
  // A cold agent: the pull must go through the swarm.
  await opts.agent.remove(opts.digest)
  const t0 = performance.now()
  await run(process.execPath, [
    distCmd('PullCLI'),
    'pull',
    '--quiet',
    '--dst-host',
    opts.agentUrl,
    '--dst-path',
    out,
    '--tag',
    opts.tag,
  ])
  const pullSeconds = (performance.now() - t0) / 1000
  const p = await opts.agent.progress(opts.digest)
  if (p.startedAt === undefined || p.finishedAt === undefined)
    throw new ShoalError('INTERNAL', `the agent reported no download times for ${opts.digest}`)
  const agentSeconds = (p.finishedAt - p.startedAt) / 1000

  const c0 = performance.now()
  await run('cp', [opts.file, join(out, 'cp.bin')])
  const cpSeconds = (performance.now() - c0) / 1000

  const step = async (stream: boolean) => {
    const path = join(out, `step-${stream}.tmp`)
    const s0 = performance.now()
    const r = await fetchBlob(opts.agent, DEFAULT_NAMESPACE, opts.digest, path, { stream })
    const seconds = (performance.now() - s0) / 1000
    if (r.copied === stream)
      throw new ShoalError('INTERNAL', `the ${stream ? 'stream' : 'copy'} path was not taken`)
    await rm(path)
    return seconds
  }
  const lastStepCopySeconds = await step(false)
  const lastStepStreamSeconds = await step(true)
  await rm(out, { recursive: true, force: true })
  return { pullSeconds, agentSeconds, cpSeconds, lastStepCopySeconds, lastStepStreamSeconds }
}
