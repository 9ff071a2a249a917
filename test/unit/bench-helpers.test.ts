import t from 'tap'
import {
  fmt,
  formatBytes,
  formatTable,
  maxRate,
  parseProcStatTicks,
  parseProcStatusField,
  parseSize,
  percentile,
  perSecond,
  promSum,
  summarize,
  sumSeries,
  TokenBucket,
  verdict,
} from '../bench/helpers.js'
import { type BenchParams, buildResult, type RunMeta } from '../bench/report.js'
import { cdfSteps, niceAxis, renderChart } from '../bench/svg.js'

t.test('sizes: binary and decimal units, errors name the input', async (t) => {
  t.equal(parseSize('4096'), 4096)
  t.equal(parseSize('128MiB'), 128 * 1024 ** 2)
  t.equal(parseSize('1GiB'), 1024 ** 3)
  t.equal(parseSize('8mib'), 8 << 20)
  t.equal(parseSize('1.5GB'), 1.5e9)
  t.equal(parseSize('16 KiB'), 16384)
  t.throws(() => parseSize('8Mbit'), /not a size: "8Mbit"/)
  t.throws(() => parseSize('-1'), /not a size/)
  t.throws(() => parseSize('0'), /out of range/)
  t.equal(formatBytes(134217728), '128 MiB')
  t.equal(formatBytes(1536), '1.50 KiB')
  t.equal(formatBytes(1024 ** 3), '1 GiB')
})

t.test('percentiles interpolate between closest ranks', async (t) => {
  t.equal(percentile([4, 1, 3, 2], 50), 2.5)
  t.equal(percentile([1, 2, 3, 4], 100), 4)
  t.equal(percentile([1, 2, 3, 4], 0), 1)
  t.equal(percentile([7], 95), 7)
  t.ok(Number.isNaN(percentile([], 50)))
  t.equal(
    percentile(
      Array.from({ length: 21 }, (_, i) => i),
      95,
    ),
    19,
  )
  t.same(summarize([10, 20, 30]), { p50: 20, p95: 29, max: 30 })
})

t.test('/proc parsing: CPU ticks from stat, VmHWM from status', async (t) => {
  // A command name with spaces and a ')' must not shift the fields.
  const stat = '4242 (node (x) y) S 1 4242 4242 0 -1 4194560 5000 0 0 0 150 37 0 0 20 0 11 0 100 0 0'
  t.equal(parseProcStatTicks(stat), 187)
  t.throws(() => parseProcStatTicks('garbage'))
  const status = 'Name:\tnode\nVmPeak:\t 1000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  100 kB\n'
  t.equal(parseProcStatusField(status, 'VmHWM'), 204800 * 1024)
  t.equal(parseProcStatusField(status, 'VmSwap'), undefined)
})

t.test('Prometheus text: sums label sets, exact names, declared-but-empty is 0', async (t) => {
  const text = [
    '# HELP shoal_torrent_bytes_received_total Block bytes received',
    '# TYPE shoal_torrent_bytes_received_total counter',
    'shoal_torrent_bytes_received_total{source="origin",component="agent"} 100',
    'shoal_torrent_bytes_received_total{source="agent",component="agent"} 23',
    'shoal_torrent_bytes_received_total_extra 999',
    '# TYPE shoal_torrent_bytes_sent_total counter',
    'shoal_torrent_bytes_sent_total 5e3',
    '# TYPE shoal_torrent_peers gauge',
  ].join('\n')
  t.equal(promSum(text, 'shoal_torrent_bytes_received_total'), 123)
  t.equal(promSum(text, 'shoal_torrent_bytes_sent_total'), 5000)
  t.equal(promSum(text, 'shoal_torrent_peers'), 0)
  t.equal(promSum(text, 'shoal_missing_total'), undefined)
})

t.test('highest 1-s rate: jitter merged, short runs counted over a whole second', async (t) => {
  const samples = [
    { t: 0, value: 0 },
    { t: 1000, value: 8 << 20 },
    { t: 1010, value: (8 << 20) + (1 << 20) }, // 10 ms later: merged, not a 100 MiB/s spike
    { t: 2000, value: 18 << 20 },
  ]
  t.equal(maxRate(samples), 10 << 20)
  t.equal(maxRate([]), 0)
  t.equal(maxRate([{ t: 0, value: 5 }]), 0)
  // A run over in 0.66 s moved all its bytes within one 1-s window.
  t.equal(
    maxRate([
      { t: 0, value: 0 },
      { t: 660, value: 40 << 20 },
    ]),
    40 << 20,
  )
  // A short tail after full windows is counted the same way.
  t.equal(
    maxRate([
      { t: 0, value: 0 },
      { t: 1000, value: 1 << 20 },
      { t: 1300, value: 3 << 20 },
    ]),
    2 << 20,
  )
})

t.test('token bucket: one burst after idle, then the rate, FIFO across callers', async (t) => {
  let now = 10_000
  const bucket = new TokenBucket(1000, 100, () => now) // 1000 B/s, 100 B burst
  t.equal(bucket.delayFor(100), 0, 'the burst goes at once')
  t.equal(bucket.delayFor(100), 100, 'then 100 B wait 100 ms')
  t.equal(bucket.delayFor(50), 150, 'a second caller queues behind the first')
  now += 10_000
  t.equal(bucket.delayFor(100), 0, 'idle time earns one burst again, not more')
  t.equal(bucket.delayFor(100), 100)
  // Over a long run the bytes sent stay within rate·t + burst.
  now = 100_000
  const b = new TokenBucket(8 << 20, 64 << 10, () => now)
  let sent = 0
  for (let i = 0; i < 1000; i++) {
    now += b.delayFor(64 << 10)
    sent += 64 << 10
  }
  t.ok(sent <= ((now - 100_000) / 1000) * (8 << 20) + (64 << 10) + 1)
  t.throws(() => new TokenBucket(0, 1))
})

t.test('verdicts and the table', async (t) => {
  t.equal(verdict(1.04, { op: '<=', value: 1.05 }), 'PASS')
  t.equal(verdict(1.06, { op: '<=', value: 1.05 }), 'MISS')
  t.equal(verdict(15, { op: '>=', value: 15 }), 'PASS')
  t.equal(verdict(null, { op: '>=', value: 15 }), 'n/a')
  t.equal(verdict(Number.NaN, { op: '>=', value: 15 }), 'n/a')
  t.equal(fmt(undefined), '–')
  t.equal(fmt(1.23456, 3), '1.235')
  const table = formatTable(
    ['figure', 'value'],
    [
      ['a', '1.00'],
      ['longer', '10.00'],
    ],
  )
  t.equal(table, 'figure  value\n------  -----\na        1.00\nlonger  10.00')
})

t.test('SVG chart: axis, CDF steps, escaping, off-chart markers', async (t) => {
  t.same(niceAxis(17), { max: 20, step: 5 })
  t.equal(niceAxis(0.9).step, 0.2)
  t.same(niceAxis(170), { max: 200, step: 50 })
  t.same(niceAxis(0), { max: 1, step: 0.2 })
  t.same(cdfSteps([2, 1], 4), [
    [0, 0],
    [1, 0],
    [1, 0.25],
    [2, 0.25],
    [2, 0.5],
  ])
  const svg = renderChart({
    title: 'A <b> & "c"',
    series: [{ name: 'Shoal', color: '#00f', times: [15, 16, 17], hosts: 4 }],
    markers: [
      { label: 'bound S/B', x: 16 },
      { label: 'far', x: 320, stretch: false },
    ],
  })
  t.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/)
  t.match(svg, /A &lt;b&gt; &amp; &quot;c&quot;/)
  t.match(svg, /Shoal \(3\/4 hosts\)/)
  t.match(svg, /far: 320 s \(off chart\)/)
  t.match(svg, /bound S\/B \(16 s\)/)
  t.equal((svg.match(/<path /g) ?? []).length, 1)
  t.ok(svg.trimEnd().endsWith('</svg>'))
})

t.test('result: the issue field names, ratios to the bound, an unfinished host voids max', async (t) => {
  const params: BenchParams = {
    size: 16 << 20,
    agents: 2,
    cap: 8 << 20,
    burst: undefined,
    capsApplied: true,
    capsNote: '',
    httpClients: 1,
    httpSize: 4 << 20,
    singleSize: 1 << 30,
    parts: ['shoal', 'aria2', 'http', 'single'],
    warmup: 2 << 20,
  }
  const meta: RunMeta = {
    started_at: 'now',
    command: 'x',
    commit: 'abc',
    machine: { cpus: 2, cpu_model: 'cpu', mem_gib: 1, os: 'os', node: 'v20' },
  }
  const swarm = {
    completion: [2, 2.2],
    firstPiece: [0.3, 0.5],
    failures: [],
    originSentBytes: 24 << 20,
    bytesFromOrigins: 24 << 20,
    bytesFromAgents: 8 << 20,
    agentCpuSeconds: 0.67108864,
    herdCpuSeconds: 0.1,
    agentPeakRss: [100 << 20, 120 << 20],
    herdPeakRss: 150 << 20,
    maxEgressRate: 4e6,
    maxIngressRate: 8 << 20,
  }
  const r = buildResult(
    params,
    {
      swarm,
      aria2: { completion: [3.3, 3.1], failures: [], leecherCpuSeconds: 1, leecherPeakRss: 1 << 20 },
      http: { clients: 1, bytes: 4 << 20, completion: [0.5] },
      single: {
        bytes: 1 << 30,
        shoalSeconds: 2,
        tcpSeconds: 1.6,
        agentPeakRss: 90 << 20,
        agentCpuSeconds: 3,
      },
      warmupMakespan: 0.4,
    },
    meta,
  )
  const near = (a: number | null | undefined, b: number, what: string) =>
    t.ok(a !== null && a !== undefined && Math.abs(a - b) < 1e-9, `${what}: ${a} ≈ ${b}`)
  near(r.makespan_over_bound?.p50, 1.05, 'p50')
  near(r.makespan_over_bound?.p95, 1.095, 'p95')
  near(r.makespan_over_bound?.max, 1.1, 'max')
  near(r.vs_aria2, 1.5, 'vs_aria2')
  near(r.fanout_speedup, (0.5 * 8) / 2.2, 'fanout: HTTP time scaled to N·S')
  near(r.origin_egress_over_size, 1.5, 'origin egress')
  near(r.cap_adherence, 1, 'cap adherence')
  near(r.agent_peak_rss_mib, 120, 'RSS, single transfer included')
  near(r.first_piece_s, 0.4, 'first piece p50')
  near(r.single_transfer_over_raw_tcp, 0.8, 'single')
  near(r.cpu_s_per_gb, 20, 'CPU per GB')
  t.equal(r.params.warmup_bytes, 2 << 20, 'the warm-up is recorded with the parameters')
  t.equal(r.details.shoal?.warmup_makespan_s, 0.4)
  const unfinished = buildResult(params, { swarm: { ...swarm, completion: [2, null] } }, meta)
  t.equal(unfinished.makespan_over_bound?.max, null)
  t.equal(unfinished.vs_aria2, null)
  t.equal(buildResult({ ...params, capsApplied: false }, { swarm }, meta).cap_adherence, null)
})

t.test(
  'perSecond books each interval in the second its end falls in; sumSeries adds unequal lengths',
  async (t) => {
    const samples = [
      { t: 100, value: 0 },
      { t: 1_050, value: 10 },
      { t: 2_020, value: 25 },
      { t: 2_900, value: 30 },
      { t: 4_100, value: 30 },
    ]
    t.same(perSecond(samples), [0, 10, 20, 0, 0])
    t.same(perSecond([{ t: 0, value: 5 }]), [], 'one sample has no interval')
    t.same(sumSeries([[1, 2, 3], [10], []]), [11, 2, 3])
  },
)
