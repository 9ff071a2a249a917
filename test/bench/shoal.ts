/**
 * Shoal under the benchmark: a herd and N agents from dist/ as separate processes on free ports,
 * each with its own data folder, log file and (when this build has them) bandwidth caps passed
 * as config overrides; the blob pushed with PushCLI; then every agent asked for it at once.
 */
import { execFile } from 'node:child_process'
import { setMaxListeners } from 'node:events'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { AgentClient } from '../../lib/agent/client/index.js'
import { DEFAULT_NAMESPACE, Digest } from '../../lib/core/index.js'
import { ShoalError } from '../../lib/errors/index.js'
import { maxRate, perSecond, sumSeries } from './helpers.js'
import {
  cpuSeconds,
  distCmd,
  freePort,
  freePortRange,
  MetricsSampler,
  type Proc,
  type ProcGroup,
  peakRss,
  ROOT,
  waitReady,
} from './procs.js'

const run = promisify(execFile)

export interface Caps {
  bytesPerSec: number
  burstBytes?: number | undefined
}

/**
 * Whether the built agent and origin accept `bandwidth` in their config (lib/bandwidth landed),
 * asked of the schemas in dist/ so the answer always matches the binaries that will run.
 */
export async function capsSupported(withBurst: boolean): Promise<{ agent: boolean; origin: boolean }> {
  const sample = {
    bandwidth: {
      egressBytesPerSec: 1 << 20,
      ingressBytesPerSec: 1 << 20,
      ...(withBurst ? { burstBytes: 1 << 20 } : {}),
    },
  }
  const accepts = async (module: string, name: string) => {
    try {
      const schema = (await import(join(ROOT, 'dist', 'lib', module, 'config.js')))[name] as {
        safeParse(v: unknown): { success: boolean }
      }
      return schema.safeParse(sample).success
    } catch {
      return false
    }
  }
  return {
    agent: await accepts('agent', 'AgentConfigSchema'),
    origin: await accepts('origin', 'OriginConfigSchema'),
  }
}

const bandwidthSection = (caps: Caps) => ({
  egressBytesPerSec: caps.bytesPerSec,
  ingressBytesPerSec: caps.bytesPerSec,
  ...(caps.burstBytes ? { burstBytes: caps.burstBytes } : {}),
})

export interface AgentProc {
  proc: Proc
  server: number
  peer: number
  client: AgentClient
}

export interface Cluster {
  herd: Proc
  basePort: number
  agents: AgentProc[]
  originUrl: string
}

/**
 * Starts a herd (development intervals, as the devcluster runs it) and `agents` agents. `caps`
 * is applied to the origin and to each agent only where the build supports it. Config files are
 * JSON, which is YAML, extending the shipped development.yaml of each component.
 */
export async function startCluster(opts: {
  dir: string
  agents: number
  procs: ProcGroup
  caps?: { agent?: Caps | undefined; origin?: Caps | undefined }
  /** Extra node flags for every process (profiling: --cpu-prof, --perf-basic-prof). */
  nodeArgs?: readonly string[]
  logLevel?: string
}): Promise<Cluster> {
  await mkdir(join(opts.dir, 'logs'), { recursive: true })
  const node = opts.nodeArgs ?? []
  const basePort = await freePortRange(5)
  const herdConfig = join(opts.dir, 'herd.yaml')
  await writeFile(
    herdConfig,
    JSON.stringify({
      extends: join(ROOT, 'config', 'herd', 'development.yaml'),
      ...(opts.logLevel ? { log: { level: opts.logLevel } } : {}),
      ...(opts.caps?.origin ? { origin: { bandwidth: bandwidthSection(opts.caps.origin) } } : {}),
    }),
  )
  const herd = opts.procs.spawn(
    'herd',
    process.execPath,
    [
      ...node,
      distCmd('shoal'),
      'herd',
      '--config',
      herdConfig,
      '--data-dir',
      join(opts.dir, 'herd'),
      '--base-port',
      String(basePort),
      '--host',
      '127.0.0.1',
    ],
    { log: join(opts.dir, 'logs', 'herd.log') },
  )
  await waitReady(herd, `http://127.0.0.1:${basePort}`)
  await waitReady(herd, `http://127.0.0.1:${basePort + 2}`)

  const agentConfig = join(opts.dir, 'agent.yaml')
  await writeFile(
    agentConfig,
    JSON.stringify({
      extends: join(ROOT, 'config', 'agent', 'development.yaml'),
      ...(opts.logLevel ? { log: { level: opts.logLevel } } : {}),
      ...(opts.caps?.agent ? { bandwidth: bandwidthSection(opts.caps.agent) } : {}),
    }),
  )
  const agents: AgentProc[] = []
  for (let i = 1; i <= opts.agents; i++) {
    const server = await freePort()
    const peer = await freePort()
    const name = `agent-${i}`
    const proc = opts.procs.spawn(
      name,
      process.execPath,
      [
        ...node,
        distCmd('shoal'),
        'agent',
        '--config',
        agentConfig,
        '--port',
        String(server),
        '--peer-port',
        String(peer),
        '--data-dir',
        join(opts.dir, name),
        '--tracker',
        `127.0.0.1:${basePort + 3}`,
        '--build-index',
        `127.0.0.1:${basePort + 4}`,
      ],
      { log: join(opts.dir, 'logs', `${name}.log`) },
    )
    agents.push({ proc, server, peer, client: new AgentClient(`127.0.0.1:${server}`) })
  }
  await Promise.all(agents.map((a) => waitReady(a.proc, `http://127.0.0.1:${a.server}`)))
  return { herd, basePort, agents, originUrl: `http://127.0.0.1:${basePort + 2}` }
}

/** Pushes a file with PushCLI through the cluster's proxy; returns its digest. */
export async function pushFile(cluster: Cluster, file: string): Promise<Digest> {
  const { stdout } = await run(process.execPath, [
    distCmd('PushCLI'),
    'push',
    '--src-path',
    file,
    '--src-host',
    '127.0.0.1',
    '--dst-host',
    `127.0.0.1:${cluster.basePort}`,
  ])
  const digest = /^digest:\s+(\S+)/m.exec(stdout)?.[1]
  if (!digest) throw new ShoalError('INTERNAL', `PushCLI printed no digest: ${stdout}`)
  return Digest.parse(digest)
}

export interface SwarmResult {
  /** Seconds from the start to the blob verified in each agent's cache (null: did not finish). */
  completion: Array<number | null>
  /** Seconds from the start to each agent's first verified piece. */
  firstPiece: Array<number | null>
  failures: string[]
  originSentBytes: number | undefined
  bytesFromOrigins: number
  bytesFromAgents: number
  agentCpuSeconds: number
  herdCpuSeconds: number
  agentPeakRss: number[]
  herdPeakRss: number | undefined
  /**
   * Highest 1-s egress / ingress rate seen on any host (the origin included), bytes/s: of the
   * bytes on the wire the caps count (the limiter's counters) when the build has them, else of
   * payload.
   */
  maxEgressRate: number
  maxIngressRate: number
  /** Where those rates come from (absent: payload). */
  ratesFrom?: 'wire' | 'payload'
  /**
   * The same of piece payload, which the engine counts when a whole block is accepted: a block
   * read over several seconds (256 KiB from each of ~20 peers sharing one capped link) counts
   * in the second it completed, so completions that bunch up show more than the link carried.
   */
  maxPayloadEgressRate?: number
  maxPayloadIngressRate?: number
  /**
   * Piece payload per second of the run (index = second since the agents were asked): what all
   * agents received, what all agents sent, what the origin sent. Shows where a makespan above
   * the bound is lost: ramp-up, plateau below N·B, or tail.
   */
  timeline?: { agentsReceived: number[]; agentsSent: number[]; originSent: number[] }
}

/**
 * Asks every agent for the blob at the same moment and records, per agent, when its answer
 * starts (the agent answers only once the blob's sha256 is verified in its cache) and when its
 * first piece was verified (GET /downloads/:digest polled every 100 ms until then).
 */
export async function runSwarm(
  cluster: Cluster,
  digest: Digest,
  size: number,
  timeoutMs: number,
): Promise<SwarmResult> {
  const { agents, herd } = cluster
  const cpu0 = agents.map((a) => cpuSeconds(a.proc.pid) ?? 0)
  const herdCpu0 = cpuSeconds(herd.pid) ?? 0
  const t0 = performance.now()
  const sampler = new MetricsSampler(
    [
      { name: 'origin', url: cluster.originUrl },
      ...agents.map((a) => ({ name: a.proc.name, url: `http://127.0.0.1:${a.server}` })),
    ],
    t0,
  )
  await sampler.sample()
  sampler.start(1_000)
  const deadline = AbortSignal.timeout(timeoutMs)
  // Every agent's request and poll listens on the one deadline.
  setMaxListeners(4 * agents.length + 10, deadline)
  const completion: Array<number | null> = agents.map(() => null)
  const firstPiece: Array<number | null> = agents.map(() => null)
  const failures: string[] = []
  const since = () => (performance.now() - t0) / 1000

  await Promise.all(
    agents.map(async (a, i) => {
      const polling = (async () => {
        while (firstPiece[i] === null && completion[i] === null && !deadline.aborted) {
          const p = await a.client.progress(digest).catch(() => undefined)
          if (p && p.piecesDone > 0 && p.state !== 'cached') firstPiece[i] = since()
          else await sleep(100)
        }
      })()
      try {
        const res = await a.client.blob(DEFAULT_NAMESPACE, digest, { signal: deadline, timeoutMs })
        completion[i] = since()
        firstPiece[i] ??= completion[i]
        res.body.destroy()
        if (res.size !== size) failures.push(`${a.proc.name}: size ${res.size}, expected ${size}`)
      } catch (err) {
        failures.push(`${a.proc.name}: ${(err as Error).message}`)
      }
      await polling
    }),
  )
  await sampler.sample()
  await sampler.stop()

  let bytesFromOrigins = 0
  let bytesFromAgents = 0
  for (const a of agents) {
    const p = await a.client.progress(digest).catch(() => undefined)
    bytesFromOrigins += p?.bytesFromOrigins ?? 0
    bytesFromAgents += p?.bytesFromAgents ?? 0
  }
  let maxPayloadEgressRate = 0
  let maxPayloadIngressRate = 0
  let maxWireEgressRate = 0
  let maxWireIngressRate = 0
  let wire = true
  const agentSeries = agents.map((a) => sampler.series.get(a.proc.name)!)
  const timeline = {
    agentsReceived: sumSeries(agentSeries.map((s) => perSecond(s.received))),
    agentsSent: sumSeries(agentSeries.map((s) => perSecond(s.sent))),
    originSent: perSecond(sampler.series.get('origin')?.sent ?? []),
  }
  for (const s of sampler.series.values()) {
    maxPayloadEgressRate = Math.max(maxPayloadEgressRate, maxRate(s.sent))
    maxPayloadIngressRate = Math.max(maxPayloadIngressRate, maxRate(s.received))
    if (s.wireSent.length < 2 || s.wireReceived.length < 2) wire = false
    else {
      maxWireEgressRate = Math.max(maxWireEgressRate, maxRate(s.wireSent))
      maxWireIngressRate = Math.max(maxWireIngressRate, maxRate(s.wireReceived))
    }
  }
  return {
    completion,
    firstPiece,
    failures,
    originSentBytes: sampler.delta('origin', 'sent'),
    bytesFromOrigins,
    bytesFromAgents,
    agentCpuSeconds: agents.reduce((sum, a, i) => sum + (cpuSeconds(a.proc.pid) ?? 0) - (cpu0[i] ?? 0), 0),
    herdCpuSeconds: (cpuSeconds(herd.pid) ?? 0) - herdCpu0,
    agentPeakRss: agents.map((a) => peakRss(a.proc.pid) ?? 0),
    herdPeakRss: peakRss(herd.pid),
    maxEgressRate: wire ? maxWireEgressRate : maxPayloadEgressRate,
    maxIngressRate: wire ? maxWireIngressRate : maxPayloadIngressRate,
    ratesFrom: wire ? 'wire' : 'payload',
    maxPayloadEgressRate,
    maxPayloadIngressRate,
    timeline,
  }
}
