/**
 * One uncapped transfer agent ← origin (file on the origin's disk to a verified file in the
 * agent's cache), against a plain TCP copy of the same file to a file between two processes,
 * both in the same run on the same page cache.
 */

import { basename, dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { DEFAULT_NAMESPACE, Tag } from '../../lib/core/index.js'
import { ShoalError } from '../../lib/errors/index.js'
import { cpuSeconds, type Proc, type ProcGroup, peakRss, ROOT } from './procs.js'
import { pushFile, startCluster } from './shoal.js'
import { measureUserWait, type UserWaitResult } from './user-wait.js'

export interface SingleResult {
  bytes: number
  /** Seconds from the request to the blob verified in the agent's cache. */
  shoalSeconds: number
  tcpSeconds: number
  agentPeakRss: number | undefined
  agentCpuSeconds: number | undefined
  userWait?: UserWaitResult
}

export async function runSingle(opts: {
  dir: string
  procs: ProcGroup
  file: string
  bytes: number
  timeoutMs: number
  log: (line: string) => void
}): Promise<SingleResult> {
  const cluster = await startCluster({ dir: opts.dir, agents: 1, procs: opts.procs })
  let shoalSeconds: number
  let agentPeak: number | undefined
  let agentCpu: number | undefined
  let userWait: UserWaitResult | undefined
  try {
    const digest = await pushFile(cluster, opts.file)
    const agent = cluster.agents[0] as (typeof cluster.agents)[number]
    opts.log(`single: pushed ${digest}; agent ← origin, uncapped`)
    const cpu0 = cpuSeconds(agent.proc.pid)
    const t0 = performance.now()
    const res = await agent.client.blob(DEFAULT_NAMESPACE, digest, {
      signal: AbortSignal.timeout(opts.timeoutMs),
      timeoutMs: opts.timeoutMs,
    })
    shoalSeconds = (performance.now() - t0) / 1000
    res.body.destroy()
    if (res.size !== opts.bytes)
      throw new ShoalError('SIZE_MISMATCH', `single: agent served ${res.size} bytes`)
    agentPeak = peakRss(agent.proc.pid)
    const cpu1 = cpuSeconds(agent.proc.pid)
    agentCpu = cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 : undefined
    opts.log('single: PullCLI end to end (cold agent), cp, and the last step by copy and by stream')
    userWait = await measureUserWait({
      agent: agent.client,
      agentUrl: `127.0.0.1:${agent.server}`,
      tag: Tag.from({
        srcHost: '127.0.0.1',
        srcDir: dirname(opts.file),
        fileName: basename(opts.file),
      }).toString(),
      digest,
      file: opts.file,
      dir: opts.dir,
    })
  } finally {
    await opts.procs.stop([cluster.herd, ...cluster.agents.map((a) => a.proc)])
  }
  opts.log('single: plain TCP copy of the same file')
  const tcpSeconds = await tcpCopy(
    opts.procs,
    opts.file,
    join(opts.dir, 'tcp-copy.bin'),
    opts.bytes,
    opts.dir,
  )
  return {
    bytes: opts.bytes,
    shoalSeconds,
    tcpSeconds,
    agentPeakRss: agentPeak,
    agentCpuSeconds: agentCpu,
    ...(userWait ? { userWait } : {}),
  }
}

/** Copies `src` to `dst` over a loopback TCP connection between two child processes. */
async function tcpCopy(
  procs: ProcGroup,
  src: string,
  dst: string,
  bytes: number,
  dir: string,
): Promise<number> {
  const script = join(ROOT, 'test', 'bench', 'tcp-copy.ts')
  const node = (name: string, args: string[]) =>
    procs.spawn(name, process.execPath, ['--import', 'tsx', script, ...args], {
      log: join(dir, 'logs', `${name}.log`),
      pipeStdout: true,
    })
  const recv = node('tcp-recv', ['recv', dst])
  let send: Proc | undefined
  try {
    const lines = createInterface({ input: recv.child.stdout as NodeJS.ReadableStream })
    for await (const line of lines) {
      const [word, x, y] = line.split(' ')
      if (word === 'port') send = node('tcp-send', ['send', x as string, src])
      if (word === 'done') {
        if (Number(y) !== bytes)
          throw new ShoalError('SIZE_MISMATCH', `tcp copy wrote ${y} of ${bytes} bytes`)
        return Number(x)
      }
    }
    throw new ShoalError('INTERNAL', `tcp copy failed; see ${recv.log}`)
  } finally {
    await procs.stop(send ? [recv, send] : [recv])
  }
}
