/**
 * Bandwidth limiter on a simulated clock: accuracy, burst, fairness between torrents and
 * between peers, idle-share reuse, run-time rate changes, unlimited mode, ingress pausing,
 * metrics and config. No real time passes in this file.
 */
import { execFile } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { promisify } from 'node:util'
import t from 'tap'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import {
  autoBurst,
  BandwidthUpdate,
  type EgressFlow,
  HostBandwidth,
  Limiter,
  ManualClock,
  parseByteSize,
} from '../../lib/bandwidth/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { createRegistry, type Registry } from '../../lib/metrics/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'

const KiB = 1024
const MiB = 1024 * 1024

/** A peer that always has another block to send: it asks again as soon as it is granted. */
class Sender {
  bytes = 0
  active = true
  readonly flow: EgressFlow
  constructor(
    limiter: Limiter,
    key: string,
    readonly block: number,
  ) {
    this.flow = limiter.flow(key, this.onGrant)
  }
  private readonly onGrant = (): void => {
    this.bytes += this.block
    this.drive()
  }
  drive(): void {
    while (this.active && this.flow.request(this.block)) this.bytes += this.block
  }
  stop(): void {
    this.active = false
    this.flow.cancel()
  }
  start(): void {
    this.active = true
    this.drive()
  }
}

function setup(bytesPerSec: number, burstBytes = 0) {
  const clock = new ManualClock()
  const limiter = new Limiter({ direction: 'egress', bytesPerSec, burstBytes, clock })
  return { clock, limiter }
}

const sum = (xs: Sender[]) => xs.reduce((a, s) => a + s.bytes, 0)

t.test('auto burst is 40 ms of the rate, at least 16 KiB', async (t) => {
  t.equal(autoBurst(0), 0)
  t.equal(autoBurst(100 * KiB), 16 * KiB)
  t.equal(autoBurst(100e6), 4e6)
})

t.test('the long-run rate is exact from kB/s to GB/s, whatever the message size', async (t) => {
  for (const [rate, block, seconds] of [
    [100e3, 32 * KiB, 20], // blocks twice the 16 KiB burst floor: each paid as debt
    [8 * MiB, 16 * KiB, 2],
    [100e6, 128 * KiB, 2],
    [4e9, 1 * MiB, 2],
  ] as const) {
    const { clock, limiter } = setup(rate)
    const s = new Sender(limiter, 't', block)
    s.drive()
    clock.advance(100) // past the initial burst
    const start = s.bytes
    clock.advance(seconds * 1000)
    const got = (s.bytes - start) / seconds
    t.ok(Math.abs(got / rate - 1) < 0.01, `${rate} B/s with ${block} B blocks: ${got.toFixed(0)} B/s`)
    t.ok(clock.pendingTimers <= 1, 'one timer at most')
    t.equal(limiter.bytes, s.bytes, 'limiter counts granted bytes')
  }
})

t.test('a late timer (busy event loop) costs no throughput while it is shorter than the burst', async (t) => {
  const { clock, limiter } = setup(100e6) // auto burst 4 MB = 40 ms
  clock.timerLatenessMs = 15
  const s = new Sender(limiter, 't', 64 * KiB)
  s.drive()
  const start = s.bytes
  clock.advance(2000)
  const got = (s.bytes - start) / 2
  t.ok(got / 100e6 > 0.99 && got / 100e6 < 1.01, `${(got / 1e6).toFixed(1)} MB/s with 15 ms late timers`)
})

t.test('burst: a full bucket goes at once, then the rate; idling saves no more than the burst', async (t) => {
  const { clock, limiter } = setup(1e6, 100e3)
  let taken = 0
  while (limiter.tryTake(10e3) === 0) taken += 10e3
  t.equal(taken, 100e3, 'the burst goes without waiting')
  const wait = limiter.tryTake(10e3)
  t.ok(wait >= 10 && wait <= 11, `then 10 kB waits ${wait} ms at 1 MB/s`)
  clock.advance(5000)
  taken = 0
  while (limiter.tryTake(10e3) === 0) taken += 10e3
  t.equal(taken, 100e3, 'after 5 s idle, still only the burst')
  clock.advance(100)
  t.equal(limiter.tryTake(500e3), 0, 'a message larger than the burst goes once the bucket is full')
  const debt = limiter.tryTake(10e3)
  t.ok(debt >= 409 && debt <= 411, `and leaves a debt: the next 10 kB waits ${debt} ms`)
  t.equal(clock.pendingTimers, 0, 'tryTake never starts a timer')
})

t.test('fair between two and three torrents, whatever their peer counts and block sizes', async (t) => {
  const { clock, limiter } = setup(16 * MiB)
  const a = [new Sender(limiter, 'A', 16 * KiB)]
  const b = [1, 2, 3].map(() => new Sender(limiter, 'B', 16 * KiB))
  const c = [1, 2, 3, 4, 5, 6].map(() => new Sender(limiter, 'C', 128 * KiB))
  for (const s of [...a, ...b]) s.drive()
  clock.advance(500)
  let a0 = sum(a)
  let b0 = sum(b)
  clock.advance(5000)
  const two = [sum(a) - a0, sum(b) - b0]
  const total2 = two[0]! + two[1]!
  t.ok(Math.abs(total2 / (5 * 16 * MiB) - 1) < 0.01, 'two torrents use the whole cap')
  t.ok(Math.abs(two[0]! / total2 - 0.5) < 0.02, `A (1 peer) vs B (3 peers): ${two.map((x) => x / total2)}`)

  for (const s of c) s.drive()
  clock.advance(500)
  a0 = sum(a)
  b0 = sum(b)
  const c0 = sum(c)
  const peers0 = b.map((s) => s.bytes)
  clock.advance(6000)
  const three = [sum(a) - a0, sum(b) - b0, sum(c) - c0]
  const total3 = three[0]! + three[1]! + three[2]!
  t.ok(Math.abs(total3 / (6 * 16 * MiB) - 1) < 0.01, 'three torrents use the whole cap')
  for (const [i, share] of three.entries()) {
    t.ok(Math.abs(share / total3 - 1 / 3) < 0.02, `torrent ${'ABC'[i]} share ${(share / total3).toFixed(3)}`)
  }
  const perPeer = b.map((s, i) => s.bytes - peers0[i]!)
  for (const p of perPeer) {
    t.ok(Math.abs(p / three[1]! - 1 / 3) < 0.02, `peers of B share it: ${(p / three[1]!).toFixed(3)}`)
  }
})

for (const [rate, thinkMs] of [
  [64 * MiB, 0],
  [8 * MiB, 1],
] as const)
  t.test(`fair also when peers ask again only ${thinkMs} ms after the grant (async loops)`, async (t) => {
    const { clock, limiter } = setup(rate)
    /** Like the engine's serve loop: the next request comes after the grant's callback returned. */
    class AsyncSender {
      bytes = 0
      readonly flow: EgressFlow
      private readonly again = (): void => this.drive()
      constructor(key: string) {
        this.flow = limiter.flow(key, () => {
          this.bytes += 16 * KiB
          this.later()
        })
      }
      later(): void {
        if (thinkMs === 0) clock.setSoon(this.again)
        else clock.setTimer(this.again, thinkMs)
      }
      drive(): void {
        if (this.flow.request(16 * KiB)) {
          this.bytes += 16 * KiB
          this.later()
        }
      }
    }
    const a = [new AsyncSender('A')]
    const b = [1, 2, 3, 4].map(() => new AsyncSender('B'))
    const total = (xs: AsyncSender[]) => xs.reduce((n, s) => n + s.bytes, 0)
    for (const s of [...a, ...b]) s.drive()
    clock.advance(200)
    const a0 = total(a)
    const b0 = total(b)
    clock.advance(2000)
    const got = [total(a) - a0, total(b) - b0]
    const all = got[0]! + got[1]!
    t.ok(Math.abs(all / (2 * rate) - 1) < 0.01, 'the cap is used')
    t.ok(Math.abs(got[0]! / all - 0.5) < 0.02, `A (1 peer) vs B (4 peers): ${(got[0]! / all).toFixed(3)}`)
  })

t.test("an idle torrent's share goes to the others, and comes back when it resumes", async (t) => {
  const { clock, limiter } = setup(8 * MiB)
  const a = new Sender(limiter, 'A', 16 * KiB)
  const b = new Sender(limiter, 'B', 16 * KiB)
  a.drive()
  b.drive()
  clock.advance(1000)
  b.stop()
  let a0 = a.bytes
  clock.advance(2000)
  t.ok(Math.abs((a.bytes - a0) / (2 * 8 * MiB) - 1) < 0.01, 'A alone gets the whole cap')
  b.start()
  clock.advance(200)
  a0 = a.bytes
  const b0 = b.bytes
  clock.advance(2000)
  const ratio = (a.bytes - a0) / (b.bytes - b0)
  t.ok(Math.abs(ratio - 1) < 0.03, `back to equal shares: A/B = ${ratio.toFixed(3)}`)
})

t.test('rates change at run time, to and from unlimited', async (t) => {
  const { clock, limiter } = setup(1 * MiB)
  const s = new Sender(limiter, 'A', 16 * KiB)
  s.drive()
  clock.advance(1000)
  let b0 = s.bytes
  limiter.setRate(4 * MiB)
  clock.advance(2000)
  t.ok(Math.abs((s.bytes - b0) / (8 * MiB) - 1) < 0.02, `4 MiB/s after setRate: ${(s.bytes - b0) / 2}`)
  limiter.setRate(512 * KiB)
  clock.advance(100)
  b0 = s.bytes
  clock.advance(2000)
  t.ok(Math.abs((s.bytes - b0) / MiB - 1) < 0.02, 'and down again to 512 KiB/s')

  // Unlimited: the waiting request is granted on the next tick; requests then pass at once.
  s.active = false
  t.ok(s.flow.waiting, 'a request waits at 512 KiB/s')
  limiter.setRate(0)
  clock.advance(1)
  t.notOk(s.flow.waiting, 'granted once unlimited')
  t.equal(limiter.rate, 0)
  let passed = 0
  for (let i = 0; i < 1000; i++) if (s.flow.request(1 * MiB)) passed++
  t.equal(passed, 1000, 'every request passes at once')
  t.equal(clock.pendingTimers, 0, 'unlimited mode runs no timer')

  limiter.setRate(1 * MiB, 64 * KiB)
  t.equal(limiter.burst, 64 * KiB, 'burst set with the rate')
  t.throws(() => limiter.setRate(-1), { code: 'BAD_REQUEST' })
  t.throws(() => limiter.setRate(1.5), { code: 'BAD_REQUEST' })
})

t.test('unlimited mode counts bytes and never queues or arms a timer', async (t) => {
  const { clock, limiter } = setup(0)
  const f = limiter.flow('A')
  for (let i = 0; i < 10_000; i++) f.request(1 * MiB)
  t.equal(limiter.bytes, 10_000 * MiB)
  t.equal(limiter.waiting, 0)
  t.equal(limiter.tryTake(1e12), 0)
  t.equal(f.wait(1), undefined, 'wait() needs no promise when granted at once')
  t.equal(clock.pendingTimers, 0)
})

t.test('wait(): resolves on grant, rejects ABORTED on its signal, resolves on close', async (t) => {
  const { clock, limiter } = setup(1e6, 16 * KiB)
  const f = limiter.flow('A')
  t.equal(f.wait(16 * KiB), undefined, 'the burst goes at once')
  const p = f.wait(16 * KiB)
  t.ok(p instanceof Promise, 'then it waits')
  clock.advance(20)
  await p
  t.equal(limiter.bytes, 32 * KiB)

  // Granted at 16.4 ms; by 20 ms, 3.6 kB more: 16 KiB more would wait 12.8 ms.
  t.equal(limiter.tryTake(16 * KiB), 13, 'tryTake says how long to wait')
  const ac = new AbortController()
  const aborted = f.wait(16 * KiB, ac.signal)!
  ac.abort()
  await t.rejects(aborted, { code: 'ABORTED' })
  t.equal(limiter.waiting, 0, 'an aborted wait leaves the queue')

  const g = limiter.flow('B')
  const pending = g.wait(1 * MiB)!
  g.close()
  await pending
  t.equal(limiter.waiting, 0, 'close releases a pending wait')
  t.equal(g.request(1e9), true, 'a closed flow is no longer limited')
})

t.test('setGroup moves a waiting flow; close and cancel keep the queue consistent', async (t) => {
  const { clock, limiter } = setup(1 * MiB, 16 * KiB)
  const x = new Sender(limiter, '', 16 * KiB) // before the handshake: no torrent yet
  const y = new Sender(limiter, 'T', 16 * KiB)
  x.drive()
  y.drive()
  x.flow.setGroup('T')
  t.equal(x.flow.key, 'T')
  clock.advance(1000)
  t.ok(Math.abs(x.bytes / y.bytes - 1) < 0.05, 'both peers of T share it')
  y.flow.close()
  const x0 = x.bytes
  clock.advance(1000)
  t.ok(Math.abs((x.bytes - x0) / MiB - 1) < 0.02, 'the closed flow left; x has it all')
  x.flow.close()
  x.flow.close()
  t.equal(limiter.waiting, 0)
  clock.advance(100)
  t.equal(clock.pendingTimers, 0, 'no waiters, no timer')
})

t.test('a throwing grant callback does not stall the others', async (t) => {
  const { clock, limiter } = setup(1 * MiB, 16 * KiB)
  const bad = limiter.flow('A', () => {
    throw new Error('boom')
  })
  const good = new Sender(limiter, 'B', 16 * KiB)
  good.drive()
  bad.request(16 * KiB)
  clock.advance(1000)
  t.ok(good.bytes > 0.9 * MiB, 'B kept going')
})

/** A socket stand-in: 'reads' a chunk per simulated millisecond while not paused. */
class FakeSource {
  paused = false
  bytes = 0
  pauses = 0
  pause(): void {
    this.paused = true
    this.pauses++
  }
  resume(): void {
    this.paused = false
  }
}

t.test('ingress: pauses sources over the cap and resumes them fairly across torrents', async (t) => {
  const clock = new ManualClock()
  const limiter = new Limiter({ direction: 'ingress', bytesPerSec: 32 * MiB, clock })
  const CHUNK = 64 * KiB
  const sources = [
    { key: 'A', src: new FakeSource() },
    { key: 'B', src: new FakeSource() },
    { key: 'B', src: new FakeSource() },
    { key: 'B', src: new FakeSource() },
  ].map((s) => ({ ...s, flow: limiter.register(s.src, s.key) }))
  const step = (ms: number) => {
    for (let i = 0; i < ms; i++) {
      clock.advance(1)
      for (const s of sources) {
        if (s.src.paused) continue
        s.src.bytes += CHUNK
        s.flow.received(CHUNK)
      }
    }
  }
  step(500)
  const before = sources.map((s) => s.src.bytes)
  step(4000)
  const got = sources.map((s, i) => s.src.bytes - before[i]!)
  const total = got.reduce((a, b) => a + b, 0)
  t.ok(
    Math.abs(total / (4 * 32 * MiB) - 1) < 0.02,
    `reads held to the cap: ${(total / 4 / MiB).toFixed(2)} MiB/s`,
  )
  const a = got[0]!
  t.ok(Math.abs(a / total - 0.5) < 0.02, `torrent A (1 socket) gets half: ${(a / total).toFixed(3)}`)
  for (const b of got.slice(1)) {
    t.ok(
      Math.abs(b / total - 1 / 6) < 0.02,
      `each socket of B a third of B's half: ${(b / total).toFixed(3)}`,
    )
  }
  t.ok(sources[0]!.flow.paused || sources.some((s) => s.flow.paused), 'sources are being paused')
  t.equal(
    limiter.bytes,
    sources.reduce((n, s) => n + s.src.bytes, 0),
    'every read counted',
  )

  limiter.setRate(0)
  clock.advance(1)
  t.notOk(
    sources.some((s) => s.src.paused),
    'unlimited: every paused source resumed',
  )
  limiter.setRate(1 * MiB)
  sources[0]!.flow.received(10 * MiB) // a full bucket lets one large read through, into debt
  t.notOk(sources[0]!.src.paused, 'a full bucket pays for one read of any size')
  sources[0]!.flow.received(1)
  t.ok(sources[0]!.src.paused, 'then the debt pauses the source')
  sources[0]!.flow.close()
  t.notOk(sources[0]!.src.paused, 'close resumes what the limiter paused')
})

/** A pausable source with on/off, as a net.Socket is. */
class Emitting extends EventEmitter {
  paused = false
  pause(): void {
    this.paused = true
  }
  resume(): void {
    this.paused = false
  }
}

t.test('ingress: a source with on/off is watched by the limiter and leaves it on close', async (t) => {
  const clock = new ManualClock()
  const limiter = new Limiter({ direction: 'ingress', bytesPerSec: 1 * MiB, burstBytes: 64 * KiB, clock })
  const src = new Emitting()
  const flow = limiter.register(src, '')
  t.notOk(src.paused, 'a full bucket pays for the first read before it happens')
  flow.setGroup('T')
  t.equal(flow.key, 'T')
  src.emit('data', Buffer.alloc(64 * KiB))
  t.ok(src.paused && flow.paused, 'the next read is not paid for: the source is paused')
  t.equal(limiter.bytes, 64 * KiB, 'reads are counted from the data events')
  clock.advance(70) // 64 KiB at 1 MiB/s
  t.notOk(src.paused, 'resumed once paid for')
  clock.advance(40)
  src.emit('data', Buffer.alloc(1000))
  t.notOk(src.paused, 'a small read is paid back from what accrued meanwhile')
  t.equal(limiter.bytes, 64 * KiB + 1000)
  src.emit('close')
  t.equal(src.listenerCount('data') + src.listenerCount('close'), 0, 'listeners removed on close')
  src.emit('data', Buffer.alloc(10))
  t.equal(limiter.bytes, 64 * KiB + 1000, 'nothing counted after close')
})

function metricValue(text: string, name: string, direction: string): number {
  const m = new RegExp(`^${name}\\{direction="${direction}",component="agent"\\} (\\S+)$`, 'm').exec(text)
  return m ? Number(m[1]) : Number.NaN
}

t.test('metrics: bytes by direction, caps, throttled time; totals survive close', async (t) => {
  const registry: Registry = createRegistry('agent')
  const clock = new ManualClock()
  const bw = new HostBandwidth(
    { egressBytesPerSec: 1 * MiB, ingressBytesPerSec: 0, burstBytes: 64 * KiB },
    { registry, clock },
  )
  const s = new Sender(bw.egress, 'A', 16 * KiB)
  s.drive()
  clock.advance(2000)
  bw.ingress.register(new FakeSource(), 'A').received(12345)
  let text = await registry.metrics()
  t.equal(metricValue(text, 'shoal_bandwidth_bytes_total', 'egress'), s.bytes)
  t.equal(metricValue(text, 'shoal_bandwidth_bytes_total', 'ingress'), 12345)
  t.equal(metricValue(text, 'shoal_bandwidth_cap_bytes_per_second', 'egress'), MiB)
  t.equal(metricValue(text, 'shoal_bandwidth_cap_bytes_per_second', 'ingress'), 0)
  t.equal(metricValue(text, 'shoal_bandwidth_burst_bytes', 'egress'), 64 * KiB)
  const throttled = metricValue(text, 'shoal_bandwidth_throttled_seconds_total', 'egress')
  t.ok(throttled > 1.9 && throttled <= 2, `throttled ${throttled} s of 2`)
  t.equal(metricValue(text, 'shoal_bandwidth_waiting_flows', 'egress'), 1)

  bw.setRates({ egressBytesPerSec: 2 * MiB })
  text = await registry.metrics()
  t.equal(metricValue(text, 'shoal_bandwidth_cap_bytes_per_second', 'egress'), 2 * MiB)

  const total = s.bytes
  s.active = false // (closing releases the waiter; a sender that never stops would spin)
  bw.close()
  bw.close()
  text = await registry.metrics()
  t.ok(metricValue(text, 'shoal_bandwidth_bytes_total', 'egress') >= total, 'counter kept after close')
  t.equal(metricValue(text, 'shoal_bandwidth_cap_bytes_per_second', 'egress'), 0)

  const again = new HostBandwidth(
    { egressBytesPerSec: 0, ingressBytesPerSec: 0, burstBytes: 0 },
    { registry },
  )
  again.egress.tryTake(100)
  text = await registry.metrics()
  t.equal(metricValue(text, 'shoal_bandwidth_bytes_total', 'egress'), s.bytes + 100, 'a second host adds up')
  again.close()
})

t.test('config: sizes, defaults (unlimited), and strict keys in agent and origin', async (t) => {
  t.equal(parseByteSize('8MiB'), 8 * MiB)
  t.equal(parseByteSize('8 MiB/s'), 8 * MiB)
  t.equal(parseByteSize('100MB/s'), 100e6)
  t.equal(parseByteSize('1.5GiB'), 1.5 * 1024 * MiB)
  t.equal(parseByteSize('800Mbit/s'), 100e6)
  t.equal(parseByteSize('64k'), 64e3)
  t.equal(parseByteSize('12345'), 12345)
  t.match(parseByteSize('8Mb'), /bytes or bit/)
  t.match(parseByteSize('8 furlongs'), /unknown unit/)
  t.match(parseByteSize('fast'), /not a size/)

  const parsers = [
    (v: unknown) => validateConfig(AgentConfigSchema, v).bandwidth,
    (v: unknown) => validateConfig(OriginConfigSchema, v).bandwidth,
  ]
  for (const bandwidthOf of parsers) {
    const d = { bandwidth: bandwidthOf({}) }
    t.same(
      d.bandwidth,
      { egressBytesPerSec: 0, ingressBytesPerSec: 0, burstBytes: 0, apiFloorBytesPerSec: 64 << 10 },
      'unlimited by default; PUT /bandwidth floor 64 KiB/s',
    )
    const c = {
      bandwidth: bandwidthOf({ bandwidth: { egressBytesPerSec: '8MiB', ingressBytesPerSec: 1000 } }),
    }
    t.equal(c.bandwidth.egressBytesPerSec, 8 * MiB)
    t.equal(c.bandwidth.ingressBytesPerSec, 1000)
    t.throws(() => bandwidthOf({ bandwidth: { egressBytesPerSecond: 1 } }), {
      code: 'CONFIG_INVALID',
      message: /unknown key "bandwidth\.egressBytesPerSecond"/,
    })
    t.throws(() => bandwidthOf({ bandwidth: { egressBytesPerSec: '8Mb' } }), {
      code: 'CONFIG_INVALID',
      message: /"bandwidth\.egressBytesPerSec"/,
    })
    t.throws(() => bandwidthOf({ bandwidth: { ingressBytesPerSec: -5 } }), { code: 'CONFIG_INVALID' })
  }
})

t.test('ingress: a source registered with watch: false is counted only through received()', async (t) => {
  const clock = new ManualClock()
  const limiter = new Limiter({ direction: 'ingress', bytesPerSec: 1 * MiB, burstBytes: 64 * KiB, clock })
  const src = new Emitting()
  const flow = limiter.register(src, 'T', { watch: false })
  t.equal(src.listenerCount('data') + src.listenerCount('close'), 0, 'no listeners added')
  src.emit('data', Buffer.alloc(1000))
  t.equal(limiter.bytes, 0, "'data' events are not counted (the engine reports reads itself)")
  flow.received(64 * KiB)
  t.ok(src.paused, 'a read that empties the bucket pauses the source')
  t.equal(limiter.bytes, 64 * KiB)
  clock.advance(70)
  t.notOk(src.paused, 'resumed once paid for')
  flow.close()
})

t.test('HostBandwidth.snapshot and the PUT /bandwidth body schema', async (t) => {
  const clock = new ManualClock()
  const bw = new HostBandwidth(
    { egressBytesPerSec: 1 * MiB, ingressBytesPerSec: 0, burstBytes: 0 },
    { clock },
  )
  t.same(bw.snapshot(), {
    egressBytesPerSec: MiB,
    ingressBytesPerSec: 0,
    burstBytes: 0,
    egress: { burstBytes: autoBurst(MiB), bytes: 0, throttledSeconds: 0, waitingFlows: 0 },
    ingress: { burstBytes: 0, bytes: 0, throttledSeconds: 0, waitingFlows: 0 },
  })
  const body = BandwidthUpdate.parse({ ingressBytesPerSec: '2MiB', burstBytes: 65536 })
  t.same(body, { ingressBytesPerSec: 2 * MiB, burstBytes: 64 * KiB }, 'sizes parsed, absent keys absent')
  bw.setRates(body)
  t.match(bw.snapshot(), {
    egressBytesPerSec: MiB,
    ingressBytesPerSec: 2 * MiB,
    burstBytes: 64 * KiB,
    egress: { burstBytes: 64 * KiB },
    ingress: { burstBytes: 64 * KiB },
  })
  t.notOk(BandwidthUpdate.safeParse({ egress: 1 }).success, 'unknown keys refused')
  t.notOk(BandwidthUpdate.safeParse({ egressBytesPerSec: '8Mb' }).success, 'ambiguous units refused')
  t.notOk(BandwidthUpdate.safeParse({ egressBytesPerSec: 1.5 }).success, 'fractions refused')
  bw.close()
})

t.test('systemClock.setSoon runs at once even when no I/O wakes the event loop', async (t) => {
  // In a process of its own: the test runner's own timers and pipes would wake the loop.
  // A listening server keeps the loop alive without any I/O; the immediate is scheduled from
  // a timer callback, as the limiter's are from I/O callbacks, so the loop goes on to poll,
  // where an unref'd immediate would wait for the next event (the 500 ms guard).
  const script = `
    import { createServer } from 'node:net'
    import { systemClock } from ${JSON.stringify(new URL('../../lib/bandwidth/clock.ts', import.meta.url).href)}
    const server = createServer()
    server.listen(0, '127.0.0.1', () => setTimeout(() => {
      const t0 = performance.now()
      const done = () => { console.log((performance.now() - t0).toFixed(1)); server.close(); clearTimeout(guard) }
      const guard = setTimeout(done, 500)
      systemClock.setSoon(done)
    }, 1))
  `
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', script],
    { timeout: 20_000 },
  )
  const ms = Number(stdout.trim())
  t.ok(ms < 250, `ran after ${ms} ms`)
})

t.test('ingress: reads are paid for before they happen, so no 1-s window exceeds rate + burst', async (t) => {
  const clock = new ManualClock()
  const RATE = 4 * MiB
  const limiter = new Limiter({ direction: 'ingress', bytesPerSec: RATE, clock })
  // 20 connections that all start at once and some close mid-way; each read is 1 to 64 KiB
  // and comes now and then (a deterministic pseudo-random sequence), so paused sockets may
  // hold credit they have not used.
  let seed = 7
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed / 2147483648
  }
  const sources = Array.from({ length: 20 }, (_, i) => {
    const src = new FakeSource()
    return { src, flow: limiter.register(src, i % 2 ? 'A' : 'B'), open: true }
  })
  const perMs: number[] = []
  for (let ms = 0; ms < 4000; ms++) {
    clock.advance(1)
    let read = 0
    for (const s of sources) {
      if (!s.open || s.src.paused || random() < 0.5) continue
      const n = 1 + Math.floor(random() * 64 * KiB)
      s.src.bytes += n
      read += n
      s.flow.received(n)
    }
    if (ms === 2000)
      for (const s of sources.slice(0, 10)) {
        s.open = false
        s.flow.close()
      }
    perMs.push(read)
  }
  let worst = 0
  for (let start = 0; start + 1000 <= perMs.length; start += 10) {
    let sum = 0
    for (let k = start; k < start + 1000; k++) sum += perMs[k]!
    worst = Math.max(worst, sum)
  }
  const bound = RATE + limiter.burst
  t.ok(worst <= bound, `highest 1-s window ${(worst / RATE).toFixed(3)} × rate ≤ 1 + burst/rate`)
  t.ok(worst >= 0.97 * RATE, `and the cap is used (${(worst / RATE).toFixed(3)})`)
})
