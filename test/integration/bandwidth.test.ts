/**
 * Bandwidth caps in the daemons, on real sockets: an in-process herd and agents (as in
 * cluster.test.ts), caps set in config and through PUT /bandwidth. The bounds that catch a
 * cap not being enforced are strict (rate ≤ cap × 1.1); the ones that only say "not absurdly
 * slow" or "roughly fair" are loose, because the machine is shared. Speed targets belong to
 * the benchmark (test/bench), not here.
 */
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { AgentServer } from '../../lib/agent/server/index.js'
import type { BandwidthSnapshot } from '../../lib/bandwidth/index.js'
import { push } from '../../lib/cli/push.js'
import { validateConfig } from '../../lib/config/index.js'
import type { Digest } from '../../lib/core/index.js'
import type { Herd } from '../../lib/herd/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { randomFile, tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'

const logger = silentLogger()
const MiB = 1024 * 1024

async function startAgent(
  t: Test,
  herd: Herd,
  dir: string,
  name: string,
  bandwidth: Record<string, unknown> = {},
): Promise<AgentServer> {
  const agent = new AgentServer(
    validateConfig(AgentConfigSchema, {
      server: { port: 0 },
      peer: { host: '127.0.0.1', port: 0 },
      dataDir: join(dir, name),
      trackers: [herd.urls.tracker],
      buildIndex: herd.urls.buildIndex,
      stallTimeoutSeconds: 30,
      bandwidth,
    }),
    { logger },
  )
  await agent.start()
  t.teardown(() => agent.stop())
  return agent
}

async function pushRandom(herd: Herd, dir: string, name: string, size: number): Promise<Digest> {
  const src = join(dir, name)
  await randomFile(src, size)
  return (await push({ srcPath: src, srcHost: 'h1', dstHost: herd.urls.proxy })).digest
}

/** Asks the agent for the blob; seconds until it answers (it answers once the sha256 verified). */
async function timedPull(agent: AgentServer, digest: Digest): Promise<number> {
  const t0 = performance.now()
  const res = await fetch(`${agent.url}/namespace/default/blobs/${digest}`)
  const seconds = (performance.now() - t0) / 1000
  if (res.status !== 200) throw new Error(`pull answered ${res.status}: ${await res.text()}`)
  await res.arrayBuffer()
  return seconds
}

/** A GET/PUT /bandwidth answer, or an error body. */
type Body = Partial<BandwidthSnapshot> & { code?: string; message?: string }

async function json(url: string, init?: RequestInit): Promise<{ status: number; body: Body }> {
  const res = await fetch(url, init)
  return { status: res.status, body: (await res.json()) as Body }
}

const put = (url: string, body: unknown) =>
  json(`${url}/bandwidth`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })

async function metric(url: string, name: string, direction: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const m = new RegExp(`^${name}\\{direction="${direction}"[^}]*\\} (\\S+)$`, 'm').exec(text)
  return m ? Number(m[1]) : Number.NaN
}

t.test('agent ingress cap set through PUT /bandwidth holds a pull to it; 0 lifts it', async (t) => {
  const dir = await tempDir(t)
  const herd = await startTestHerd(t, dir)
  const agent = await startAgent(t, herd, dir, 'agent')
  const SIZE = 8 * MiB
  const CAP = 4 * MiB
  const [capped, free] = [
    await pushRandom(herd, dir, 'capped.bin', SIZE),
    await pushRandom(herd, dir, 'free.bin', SIZE),
  ]

  const initial = await json(`${agent.url}/bandwidth`)
  t.equal(initial.status, 200)
  t.match(
    initial.body,
    { egressBytesPerSec: 0, ingressBytesPerSec: 0, burstBytes: 0 },
    'unlimited by default',
  )

  const set = await put(agent.url, { ingressBytesPerSec: '4MiB' })
  t.equal(set.status, 200)
  t.equal(set.body.ingressBytesPerSec, CAP, 'a human size is accepted')
  t.equal(set.body.egressBytesPerSec, 0, 'an absent key stays as it was')
  t.equal((await json(`${agent.url}/bandwidth`)).body.ingressBytesPerSec, CAP, 'GET reflects it')
  t.equal(
    await metric(agent.url, 'shoal_bandwidth_cap_bytes_per_second', 'ingress'),
    CAP,
    '/metrics shows the new cap',
  )

  const seconds = await timedPull(agent, capped)
  const rate = SIZE / seconds
  t.ok(rate <= CAP * 1.1, `capped pull: ${(rate / MiB).toFixed(2)} MiB/s in ${seconds.toFixed(2)} s ≤ 4.4`)
  t.ok(seconds >= 1.6, `took at least 1.6 s (${seconds.toFixed(2)} s)`)
  t.ok(seconds < 8, `but not absurdly longer than 2 s (${seconds.toFixed(2)} s)`)
  const throttled = await metric(agent.url, 'shoal_bandwidth_throttled_seconds_total', 'ingress')
  t.ok(throttled > 0.5, `the cap was the bottleneck for ${throttled.toFixed(2)} s`)

  // Unlimited again: the same path, and the limiter only counts.
  t.equal((await put(agent.url, { ingressBytesPerSec: 0 })).body.ingressBytesPerSec, 0)
  const before = await metric(agent.url, 'shoal_bandwidth_bytes_total', 'ingress')
  const freeSeconds = await timedPull(agent, free)
  const after = await metric(agent.url, 'shoal_bandwidth_bytes_total', 'ingress')
  t.ok(after - before >= SIZE, `reads still counted (${after - before} bytes)`)
  t.equal(
    await metric(agent.url, 'shoal_bandwidth_throttled_seconds_total', 'ingress'),
    throttled,
    'nothing waited for bandwidth',
  )
  t.ok(freeSeconds < seconds, `uncapped pull faster (${freeSeconds.toFixed(2)} s)`)

  // Bad bodies: strict keys, the config's units, JSON.
  for (const [body, why] of [
    [{ ingressBytesPerSecond: 1 }, /ingressBytesPerSecond/],
    [{ egressBytesPerSec: '8Mb' }, /egressBytesPerSec/],
    [{ egressBytesPerSec: -1 }, /egressBytesPerSec/],
    ['{', /JSON/],
  ] as const) {
    const r = await put(agent.url, body)
    t.equal(r.status, 400, `refused: ${JSON.stringify(body)}`)
    t.match(r.body, { code: 'BAD_REQUEST', message: why })
  }
  t.equal((await json(`${agent.url}/bandwidth`)).body.egressBytesPerSec, 0, 'a refused PUT changes nothing')
})

t.test('origin egress cap from config, shared fairly by two torrents pulled at once', async (t) => {
  const dir = await tempDir(t)
  const CAP = 8 * MiB
  const SIZE = 6 * MiB
  const herd = await startTestHerd(t, dir, { origin: { bandwidth: { egressBytesPerSec: '8MiB' } } })
  const a = await startAgent(t, herd, dir, 'a')
  const b = await startAgent(t, herd, dir, 'b')
  const [da, db] = [await pushRandom(herd, dir, 'a.bin', SIZE), await pushRandom(herd, dir, 'b.bin', SIZE)]
  t.equal((await json(`${herd.urls.origin}/bandwidth`)).body.egressBytesPerSec, CAP, 'origin GET /bandwidth')
  t.equal(await metric(herd.urls.origin, 'shoal_bandwidth_cap_bytes_per_second', 'egress'), CAP)

  // When the first download finishes, the other must be well along: with a FIFO (unfair)
  // limiter it would have next to nothing; with a fair one both finish together.
  const progress = async (agent: AgentServer, digest: Digest) => {
    const p = await agent.progressOf(digest)
    return p.state === 'cached' ? SIZE : p.bytesFromOrigins + p.bytesFromAgents
  }
  const t0 = performance.now()
  let firstDone: { other: number } | undefined
  const pulls = [
    [a, da, b, db],
    [b, db, a, da],
  ].map(async ([me, mine, other, theirs]) => {
    const s = await timedPull(me as AgentServer, mine as Digest)
    firstDone ??= { other: await progress(other as AgentServer, theirs as Digest) }
    return s
  })
  const times = await Promise.all(pulls)
  const elapsed = (performance.now() - t0) / 1000
  const share = firstDone!.other / SIZE
  t.ok(share >= 0.6, `when one finished, the other had ${(share * 100).toFixed(0)} % (fair: ~100 %)`)
  const rate = (2 * SIZE) / elapsed
  t.ok(
    rate <= CAP * 1.1,
    `origin sent ${(rate / MiB).toFixed(2)} MiB/s ≤ 8.8 (${times.map((s) => s.toFixed(2))} s)`,
  )
  t.ok(elapsed < 10, `in ${elapsed.toFixed(2)} s (1.5 s at the cap)`)

  // The origin's own API changes its cap; the burst too.
  const set = await put(herd.urls.origin, { egressBytesPerSec: '16MiB', burstBytes: '1MiB' })
  t.equal(set.status, 200)
  t.match(set.body, { egressBytesPerSec: 16 * MiB, burstBytes: MiB, egress: { burstBytes: MiB } })
  t.equal(await metric(herd.urls.origin, 'shoal_bandwidth_burst_bytes', 'egress'), MiB)
})

t.test('a capped origin sends a blob about once to agents pulling it together', async (t) => {
  const dir = await tempDir(t)
  const SIZE = 8 * MiB
  const herd = await startTestHerd(t, dir, { origin: { bandwidth: { egressBytesPerSec: '8MiB' } } })
  const agents = [
    await startAgent(t, herd, dir, 'a'),
    await startAgent(t, herd, dir, 'b'),
    await startAgent(t, herd, dir, 'c'),
  ]
  const digest = await pushRandom(herd, dir, 'shared.bin', SIZE)
  const sentBefore = await metric(herd.urls.origin, 'shoal_bandwidth_bytes_total', 'egress')
  await Promise.all(agents.map((a) => timedPull(a, digest)))
  const sent = (await metric(herd.urls.origin, 'shoal_bandwidth_bytes_total', 'egress')) - sentBefore
  const fromAgents = (await Promise.all(agents.map((a) => a.progressOf(digest)))).reduce(
    (n, p) => n + p.bytesFromAgents,
    0,
  )
  // Without ServeOnce the three asked the origin for the same pieces at once (1.25 × here).
  t.ok(sent <= 1.15 * SIZE, `origin sent ${(sent / SIZE).toFixed(2)} × the blob`)
  t.ok(fromAgents >= 1.5 * SIZE, `agents passed ${(fromAgents / SIZE).toFixed(2)} × the blob to each other`)
})
