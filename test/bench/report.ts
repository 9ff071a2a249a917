/**
 * Turns the phases' raw results into the figures the issue names (the JSON's top-level fields,
 * stable across runs so they can be compared over time), the stdout table with targets and
 * PASS/MISS, and the completion-time chart.
 */
import type { Aria2Result } from './aria2.js'
import {
  fmt,
  formatBytes,
  formatTable,
  percentile,
  type Summary,
  summarize,
  type Target,
  verdict,
} from './helpers.js'
import type { HttpBaselineResult } from './http-baseline.js'
import type { SwarmResult } from './shoal.js'
import type { SingleResult } from './single.js'
import type { ChartSpec } from './svg.js'

export const TARGETS = {
  makespan_p50: { op: '<=', value: 1.05 },
  makespan_max: { op: '<=', value: 1.15 },
  fanout_speedup: { op: '>=', value: 15 },
  vs_aria2: { op: '>=', value: 1.4 },
  origin_egress_over_size: { op: '<=', value: 1.5 },
  cap_adherence: { op: '<=', value: 1.05 },
  single_transfer_over_raw_tcp: { op: '>=', value: 0.8 },
  single_pull_over_agent: { op: '<=', value: 1.15 },
  agent_peak_rss_mib: { op: '<=', value: 200 },
} as const satisfies Record<string, Target>

export interface BenchParams {
  size: number
  agents: number
  cap: number
  burst: number | undefined
  capsApplied: boolean
  capsNote: string
  httpClients: number
  httpSize: number
  singleSize: number
  parts: string[]
  /** Bytes distributed through the agents before the measured run (0: cold agents). */
  warmup: number
}

export interface PhaseResults {
  swarm?: SwarmResult
  aria2?: Aria2Result
  http?: HttpBaselineResult
  single?: SingleResult
  /** Makespan of the warm-up distribution (not measured). */
  warmupMakespan?: number
}

const done = (xs: ReadonlyArray<number | null>) => xs.filter((x): x is number => x !== null)
const ratio = (a: number | undefined, b: number | undefined) =>
  a !== undefined && b !== undefined && b > 0 && Number.isFinite(a) ? a / b : null
const MiB = 1024 ** 2

/** The makespan of a run: the last completion, or undefined when a host never finished. */
function makespan(xs: ReadonlyArray<number | null> | undefined): number | undefined {
  if (!xs || xs.length === 0 || xs.some((x) => x === null)) return undefined
  return Math.max(...done(xs))
}

export interface RunMeta {
  started_at: string
  command: string
  commit: string
  machine: { cpus: number; cpu_model: string; mem_gib: number; os: string; node: string }
  duration_s?: number
}

export function buildResult(p: BenchParams, r: PhaseResults, meta: RunMeta) {
  const bound = p.size / p.cap
  const swarmTimes = r.swarm ? done(r.swarm.completion) : []
  const ours = makespan(r.swarm?.completion)
  const over = (s: Summary) => ({ p50: s.p50 / bound, p95: s.p95 / bound, max: s.max / bound })
  const mk = r.swarm && swarmTimes.length ? over(summarize(swarmTimes)) : null
  // A host that never finished makes the makespan unbounded: report max as null, not a flattering number.
  if (mk && ours === undefined) mk.max = Number.NaN
  const httpMeasured = r.http ? Math.max(...r.http.completion) : undefined
  // The baseline's makespan grows with the bytes the one server must send: scale the measured run to N·S.
  const httpScaled =
    r.http && httpMeasured !== undefined
      ? httpMeasured * ((p.agents * p.size) / (r.http.clients * r.http.bytes))
      : undefined
  const ariaMakespan = makespan(r.aria2?.completion)
  const rssAll = [
    ...(r.swarm?.agentPeakRss ?? []),
    ...(r.single?.agentPeakRss ? [r.single.agentPeakRss] : []),
  ]
  const capRate = r.swarm ? Math.max(r.swarm.maxEgressRate, r.swarm.maxIngressRate) : undefined
  const originSent = r.swarm ? (r.swarm.originSentBytes ?? r.swarm.bytesFromOrigins) : undefined
  const gbReceived = (p.agents * p.size) / 1e9
  const uw = r.single?.userWait
  const nums = (o: Record<string, number> | null) =>
    o ? Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Number.isFinite(v) ? v : null])) : null
  return {
    schema: 1,
    ...meta,
    params: {
      size_bytes: p.size,
      agents: p.agents,
      cap_bytes_per_sec: p.cap,
      burst_bytes: p.burst ?? null,
      caps_applied: p.capsApplied,
      caps_note: p.capsNote,
      parts: p.parts,
      http_baseline: { clients: p.httpClients, size_bytes: p.httpSize },
      single_size_bytes: p.singleSize,
      warmup_bytes: p.warmup,
    },
    bound_s: bound,
    makespan_over_bound: nums(mk),
    fanout_speedup: ratio(httpScaled, ours),
    vs_aria2: ratio(ariaMakespan, ours),
    origin_egress_over_size: ratio(originSent, p.size),
    cap_adherence: p.capsApplied ? ratio(capRate, p.cap) : null,
    agent_peak_rss_mib: rssAll.length ? Math.max(...rssAll) / MiB : null,
    cpu_s_per_gb: r.swarm ? r.swarm.agentCpuSeconds / gbReceived : null,
    first_piece_s: r.swarm ? nullable(percentile(done(r.swarm.firstPiece), 50)) : null,
    single_transfer_over_raw_tcp: r.single ? r.single.tcpSeconds / r.single.shoalSeconds : null,
    single_pull_over_agent: uw ? uw.pullSeconds / uw.agentSeconds : null,
    single_pull_over_cp: uw ? uw.pullSeconds / uw.cpSeconds : null,
    details: {
      shoal: r.swarm && {
        makespan_s: ours ?? null,
        warmup_makespan_s: r.warmupMakespan ?? null,
        completion_s: r.swarm.completion,
        first_piece_s: r.swarm.firstPiece,
        failures: r.swarm.failures,
        origin_sent_bytes: r.swarm.originSentBytes ?? null,
        bytes_from_origins: r.swarm.bytesFromOrigins,
        bytes_from_agents: r.swarm.bytesFromAgents,
        agent_cpu_s: r.swarm.agentCpuSeconds,
        herd_cpu_s: r.swarm.herdCpuSeconds,
        // Average cores Shoal kept busy until the last agent finished: near the machine's count
        // means the run measured CPU, not bandwidth.
        cores_busy: ours ? (r.swarm.agentCpuSeconds + r.swarm.herdCpuSeconds) / ours : null,
        agent_peak_rss_mib: r.swarm.agentPeakRss.map((b) => b / MiB),
        herd_peak_rss_mib: r.swarm.herdPeakRss === undefined ? null : r.swarm.herdPeakRss / MiB,
        max_egress_rate_bytes_per_s: r.swarm.maxEgressRate,
        max_ingress_rate_bytes_per_s: r.swarm.maxIngressRate,
        // 'wire': the limiter's byte counters (what the caps count); 'payload': block payload.
        rates_from: r.swarm.ratesFrom ?? 'payload',
        max_payload_egress_rate_bytes_per_s: r.swarm.maxPayloadEgressRate ?? r.swarm.maxEgressRate,
        max_payload_ingress_rate_bytes_per_s: r.swarm.maxPayloadIngressRate ?? r.swarm.maxIngressRate,
        // Payload bytes per second of the run: all agents received / sent, the origin sent.
        timeline_bytes_per_s: r.swarm.timeline
          ? {
              agents_received: r.swarm.timeline.agentsReceived,
              agents_sent: r.swarm.timeline.agentsSent,
              origin_sent: r.swarm.timeline.originSent,
            }
          : null,
        // What all agents received over the makespan ÷ N·B: 1 is every agent's link full all along.
        ingress_utilisation: ours
          ? (r.swarm.bytesFromAgents + r.swarm.bytesFromOrigins) / (ours * p.agents * p.cap)
          : null,
      },
      aria2: r.aria2 && {
        makespan_s: ariaMakespan ?? null,
        completion_s: r.aria2.completion,
        failures: r.aria2.failures,
        leecher_cpu_s_per_gb: r.aria2.leecherCpuSeconds / gbReceived,
        leecher_peak_rss_mib: r.aria2.leecherPeakRss / MiB,
      },
      http_baseline: r.http && {
        clients: r.http.clients,
        size_bytes: r.http.bytes,
        measured_makespan_s: httpMeasured ?? null,
        completion_s: r.http.completion,
        scaled_makespan_s: httpScaled ?? null,
        formula: `N·S/B = ${p.agents}·${formatBytes(p.size)}/${formatBytes(p.cap)}/s = ${fmt((p.agents * p.size) / p.cap, 1)} s`,
      },
      single: r.single && {
        size_bytes: r.single.bytes,
        shoal_s: r.single.shoalSeconds,
        raw_tcp_s: r.single.tcpSeconds,
        shoal_mb_per_s: r.single.bytes / 1e6 / r.single.shoalSeconds,
        raw_tcp_mb_per_s: r.single.bytes / 1e6 / r.single.tcpSeconds,
        agent_peak_rss_mib: r.single.agentPeakRss === undefined ? null : r.single.agentPeakRss / MiB,
        agent_cpu_s: r.single.agentCpuSeconds ?? null,
        user_wait: uw
          ? {
              pull_s: uw.pullSeconds,
              agent_download_s: uw.agentSeconds,
              cp_s: uw.cpSeconds,
              last_step_copy_s: uw.lastStepCopySeconds,
              last_step_stream_s: uw.lastStepStreamSeconds,
            }
          : null,
      },
    },
  }
}

export type BenchResult = ReturnType<typeof buildResult>

const nullable = (v: number) => (Number.isFinite(v) ? v : null)

const show = (t: Target) => `${t.op === '<=' ? '≤' : '≥'} ${t.value}`

export function resultTable(res: BenchResult): string {
  const m = res.makespan_over_bound
  const row = (name: string, value: number | null | undefined, digits: number, target?: Target) => [
    name,
    fmt(value, digits),
    target ? show(target) : '',
    target ? verdict(value, target) : '',
  ]
  const capNote = res.params.caps_applied ? undefined : null
  return formatTable(
    ['figure', 'value', 'target', ''],
    [
      row('makespan_over_bound p50', m?.p50, 3, TARGETS.makespan_p50),
      row('makespan_over_bound p95', m?.p95, 3),
      row('makespan_over_bound max', m?.max, 3, TARGETS.makespan_max),
      row('fanout_speedup', res.fanout_speedup, 1, TARGETS.fanout_speedup),
      row('vs_aria2', res.vs_aria2, 2, TARGETS.vs_aria2),
      row('origin_egress_over_size', res.origin_egress_over_size, 2, TARGETS.origin_egress_over_size),
      row('cap_adherence', capNote ?? res.cap_adherence, 3, TARGETS.cap_adherence),
      row('agent_peak_rss_mib', res.agent_peak_rss_mib, 0, TARGETS.agent_peak_rss_mib),
      row('cpu_s_per_gb (agents)', res.cpu_s_per_gb, 2),
      row('first_piece_s p50', res.first_piece_s, 2),
      row('single_pull_over_agent', res.single_pull_over_agent, 2, TARGETS.single_pull_over_agent),
      row('single_pull_over_cp', res.single_pull_over_cp, 2),
      row(
        'single_transfer_over_raw_tcp',
        res.single_transfer_over_raw_tcp,
        2,
        TARGETS.single_transfer_over_raw_tcp,
      ),
    ],
  )
}

/** Lines under the table: the raw times behind the ratios. */
export function resultNotes(res: BenchResult): string[] {
  const d = res.details
  const s = (v: number | null | undefined) => `${fmt(v, 2)} s`
  const out: string[] = []
  if (d.shoal)
    out.push(
      `Shoal: makespan ${s(d.shoal.makespan_s)} (bound ${s(res.bound_s)}); origin sent ${formatBytes(d.shoal.origin_sent_bytes ?? d.shoal.bytes_from_origins)}, ` +
        `agents got ${formatBytes(d.shoal.bytes_from_agents)} from each other; herd CPU ${s(d.shoal.herd_cpu_s)}` +
        (d.shoal.failures.length ? `; ${d.shoal.failures.length} FAILED` : ''),
    )
  if (d.shoal)
    out.push(
      res.params.warmup_bytes > 0
        ? `agents warmed up first: one ${formatBytes(res.params.warmup_bytes)} distribution through the same agents (makespan ${s(d.shoal.warmup_makespan_s)}, not measured), as long-running daemons are; --warmup 0 measures cold ones`
        : 'agents cold: the measured distribution is the first these processes run (--warmup 0)',
    )
  const tl = d.shoal?.timeline_bytes_per_s
  if (tl && d.shoal?.ingress_utilisation != null) {
    const B = res.params.cap_bytes_per_sec * res.params.agents
    const pct = (v: number | undefined) => `${Math.round((100 * (v ?? 0)) / B)}`
    out.push(
      `agents' ingress: ${fmt(100 * d.shoal.ingress_utilisation, 0)} % of N·B over the makespan; per second, % of N·B: ` +
        tl.agents_received.map(pct).join(' '),
    )
  }
  const busy = d.shoal?.cores_busy
  if (busy && busy > 0.8 * res.machine.cpus)
    out.push(
      `CPU-bound: Shoal kept ${fmt(busy, 2)} of ${res.machine.cpus} cores busy on average, so this run measured CPU, ` +
        `not bandwidth (at ${fmt(res.cpu_s_per_gb, 1)} CPU s/GB, N·B needs ${fmt(((res.cpu_s_per_gb ?? 0) * res.params.agents * res.params.cap_bytes_per_sec) / 1e9, 2)} cores; a lower --cap gives a bandwidth-bound run)`,
    )
  if (res.cap_adherence !== null && d.shoal) {
    const payload =
      Math.max(d.shoal.max_payload_egress_rate_bytes_per_s, d.shoal.max_payload_ingress_rate_bytes_per_s) /
      res.params.cap_bytes_per_sec
    out.push(
      d.shoal.rates_from === 'wire'
        ? `cap_adherence: bytes through the hosts' limiters (shoal_bandwidth_bytes_total); piece payload, counted when a whole block has arrived, peaked at ${fmt(payload, 3)} × B`
        : 'cap_adherence: piece payload counted when a whole block has arrived (this build has no limiter counters)',
    )
  }
  if (res.cap_adherence !== null && res.cap_adherence > 2)
    out.push(
      `caps: set in config, but a host moved ${fmt(res.cap_adherence, 1)} × B in one second: this build does not enforce them`,
    )
  if (d.aria2)
    out.push(
      `aria2c swarm: makespan ${s(d.aria2.makespan_s)}, p50 ${s(percentile(done(d.aria2.completion_s), 50))}; ` +
        `leechers ${fmt(d.aria2.leecher_cpu_s_per_gb, 2)} CPU s/GB, peak RSS ${fmt(d.aria2.leecher_peak_rss_mib, 0)} MiB` +
        (d.aria2.failures.length ? `; ${d.aria2.failures.length} FAILED` : ''),
    )
  if (d.http_baseline)
    out.push(
      `HTTP baseline: ${d.http_baseline.clients} × ${formatBytes(d.http_baseline.size_bytes)} in ${s(d.http_baseline.measured_makespan_s)}, ` +
        `scaled to N·S: ${s(d.http_baseline.scaled_makespan_s)} (formula ${d.http_baseline.formula})`,
    )
  if (d.single)
    out.push(
      `single ${formatBytes(d.single.size_bytes)}: Shoal ${s(d.single.shoal_s)} (${fmt(d.single.shoal_mb_per_s, 0)} MB/s), ` +
        `plain TCP file copy ${s(d.single.raw_tcp_s)} (${fmt(d.single.raw_tcp_mb_per_s, 0)} MB/s); agent peak RSS ${fmt(d.single.agent_peak_rss_mib, 0)} MiB`,
    )
  const uw = d.single?.user_wait
  if (uw)
    out.push(
      `user wait: PullCLI ${s(uw.pull_s)} end to end, the agent's download ${s(uw.agent_download_s)}, cp ${s(uw.cp_s)}; ` +
        `last step with the blob cached: kernel copy ${s(uw.last_step_copy_s)}, HTTP stream + hash ${s(uw.last_step_stream_s)}`,
    )
  return out
}

export function chartSpec(res: BenchResult): ChartSpec {
  const p = res.params
  const d = res.details
  const series: ChartSpec['series'] = [
    ...(d.shoal
      ? [{ name: 'Shoal', color: '#1f77b4', times: done(d.shoal.completion_s), hosts: p.agents }]
      : []),
    ...(d.aria2
      ? [{ name: 'aria2c swarm', color: '#d62728', times: done(d.aria2.completion_s), hosts: p.agents }]
      : []),
    ...(d.http_baseline
      ? [
          {
            name: `HTTP from one capped server (${d.http_baseline.clients} × ${formatBytes(d.http_baseline.size_bytes)})`,
            color: '#7f7f7f',
            times: d.http_baseline.completion_s,
            hosts: d.http_baseline.clients,
          },
        ]
      : []),
  ]
  return {
    title: `${formatBytes(p.size_bytes)} to ${p.agents} hosts, ${formatBytes(p.cap_bytes_per_sec)}/s per host${p.caps_applied ? '' : ' (Shoal uncapped)'}`,
    subtitle: `share of hosts complete over time; run of ${res.started_at}, commit ${res.commit}`,
    series,
    markers: [
      { label: 'bound S/B', x: res.bound_s, color: '#2ca02c' },
      ...(d.http_baseline?.scaled_makespan_s
        ? [
            {
              label: 'HTTP baseline for N hosts',
              x: d.http_baseline.scaled_makespan_s,
              color: '#7f7f7f',
              stretch: false,
            },
          ]
        : []),
    ],
  }
}
