/**
 * One direction (egress or ingress) of a host's bandwidth: a token bucket, and a fair queue
 * over groups (torrents) of flows (peer connections) waiting for it.
 *
 * Fairness is start-time fair queuing over bytes: a request gets the virtual start tag
 * max(V, its group's last finish tag), where V is the tag of the request last granted, and
 * requests are granted in tag order (groups in a small heap, flows FIFO within a group). So
 * every torrent that keeps asking gets the same bytes, whatever its peer count or block size;
 * a torrent that stops asking falls behind V and saves nothing, so its share goes to the others
 * at once; and a peer that asks for its next block only after the last one was granted (a
 * closed loop, as the engine's uploader is) keeps its torrent's place, because its new tag
 * follows its torrent's previous one, not the end of the queue (see pump() for the batches).
 * Peers of one torrent take turns.
 *
 * The fast path (nobody waiting, the bucket over half full: one clock read, a few arithmetic
 * operations) grants on the spot. Below half a bucket, requests queue even when the bucket
 * could pay: that is when the cap is the bottleneck, and first-come order would be unfair.
 * One timer per limiter (never per request) fires when the bucket can pay for the next tag, or
 * a setImmediate when it already can. Queues are intrusive lists threaded through the flow and
 * group objects, so queueing, granting and cancelling allocate nothing.
 */
import { ShoalError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import { MAX_RATE, TokenBucket } from './bucket.js'
import { type Clock, systemClock } from './clock.js'
import {
  DEFAULT_READ_SIZE,
  type EgressFlow,
  EgressFlowImpl,
  type FlowBase,
  type IngressFlow,
  SocketFlow,
} from './flow.js'
import { GroupHeap } from './heap.js'

export type Direction = 'egress' | 'ingress'

/** What `register` needs from a socket: the limiter pauses it while the bucket is empty. */
export interface PausableSource {
  pause(): unknown
  resume(): unknown
}

/** A source the limiter can watch itself (net.Socket is one). */
export interface ObservableSource extends PausableSource {
  on(event: 'data', listener: (chunk: Buffer) => void): unknown
  on(event: 'close', listener: () => void): unknown
  off(event: 'data', listener: (chunk: Buffer) => void): unknown
  off(event: 'close', listener: () => void): unknown
}

export interface LimiterOptions {
  direction: Direction
  /** 0 = unlimited. */
  bytesPerSec: number
  /** 0 or absent = auto (see autoBurst). */
  burstBytes?: number
  clock?: Clock
  logger?: Logger
}

/** A torrent's waiting flows, FIFO; in the limiter's heap while any wait. */
export class Group {
  /** Flows belonging to the group (waiting or not); the group is dropped at zero. */
  refs = 0
  head: FlowBase | null = null
  tail: FlowBase | null = null
  /** Virtual finish tag of the group's latest request. */
  lastFinish = 0
  /** Position in the heap; -1 when no flow of the group waits. */
  heapIndex = -1
  constructor(readonly key: string) {}
}

export function checkRate(what: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > MAX_RATE) {
    throw new ShoalError('BAD_REQUEST', `${what} must be an integer from 0 to ${MAX_RATE}, got ${value}`)
  }
  return value
}

export class Limiter {
  readonly direction: Direction
  /** Bytes granted (egress) or read (ingress) so far; the metrics report it. */
  bytes = 0
  private readonly bucket: TokenBucket
  private readonly clock: Clock
  private readonly log: Logger | undefined
  private burstConfig: number
  private readonly groups = new Map<string, Group>()
  private readonly heap = new GroupHeap()
  /** Virtual time: the start tag of the request granted last. */
  private vtime = 0
  private waitingFlows = 0
  private queuedBytes = 0
  private timer: unknown
  private timerIsSoon = false
  private timerDue = 0
  private pumping = false
  private closed = false
  private throttledMs = 0
  private throttledSince = 0
  private readonly onTimer = (): void => {
    this.timer = undefined
    this.pump()
  }

  constructor(o: LimiterOptions) {
    this.direction = o.direction
    this.clock = o.clock ?? systemClock
    this.log = o.logger
    this.burstConfig = checkRate('burstBytes', o.burstBytes ?? 0)
    this.bucket = new TokenBucket(
      checkRate(`${o.direction} rate`, o.bytesPerSec),
      this.burstConfig,
      this.clock.now(),
    )
  }

  /** Bytes per second; 0 = unlimited. */
  get rate(): number {
    return this.bucket.rate
  }

  /** The configured burst: 0 = automatic (see `burst` for the one in effect). */
  get burstSetting(): number {
    return this.burstConfig
  }

  /** The burst in effect (the configured one, or the automatic one). */
  get burst(): number {
    return this.bucket.burst
  }

  /** Flows waiting for bandwidth now. */
  get waiting(): number {
    return this.waitingFlows
  }

  /** Seconds during which at least one flow waited (the cap was the bottleneck). */
  get throttledSeconds(): number {
    const open = this.waitingFlows > 0 ? this.clock.now() - this.throttledSince : 0
    return (this.throttledMs + open) / 1000
  }

  /**
   * Changes the cap at run time (0 = unlimited); `burstBytes` 0 = auto, absent = keep the
   * configured one. Waiting flows are re-evaluated on the next tick, not synchronously.
   */
  setRate(bytesPerSec: number, burstBytes?: number): void {
    checkRate(`${this.direction} rate`, bytesPerSec)
    if (burstBytes !== undefined) this.burstConfig = checkRate('burstBytes', burstBytes)
    this.bucket.configure(bytesPerSec, this.burstConfig, this.clock.now())
    this.log?.info(
      { direction: this.direction, bytesPerSec, burstBytes: this.bucket.burst },
      bytesPerSec === 0 ? 'bandwidth cap removed' : 'bandwidth cap set',
    )
    if (this.waitingFlows > 0) this.rearm(0)
  }

  /**
   * For callers that wait on their own (outside the fair queue): takes `n` bytes and returns
   * 0, or takes nothing and returns roughly how many ms until they could go.
   */
  tryTake(n: number): number {
    if (this.closed || this.bucket.unlimited) {
      this.bytes += n
      return 0
    }
    this.bucket.refill(this.clock.now())
    if (this.waitingFlows === 0 && this.bucket.canTake(n)) {
      this.bucket.take(n)
      this.bytes += n
      return 0
    }
    const ahead = this.waitingFlows > 0 ? (this.queuedBytes * 1000) / this.bucket.rate : 0
    return Math.max(1, Math.ceil(this.bucket.msUntil(n) + ahead))
  }

  /**
   * An egress flow: one per peer connection, kept for its lifetime. `onGrant` (bound once, not
   * per block) runs when a queued request is granted; or use `wait()` instead.
   */
  flow(groupKey: string, onGrant?: (flow: EgressFlow) => void): EgressFlow {
    return new EgressFlowImpl(this, this.join(groupKey), onGrant)
  }

  /**
   * An ingress flow: `source` reads only while one read (`readSize`, default 64 KiB: the most
   * a socket reads at once) is paid for; the limiter pauses it otherwise and resumes it in fair
   * order (see IngressFlow). With `on`/`off` (a net.Socket) it counts 'data' itself and closes
   * on 'close', unless `watch` is false; otherwise call `flow.received(bytes)` for each chunk
   * read. The engine passes false: its outgoing sockets read through `onread` and emit no
   * 'data', so it reports every read itself, from the one place reads arrive.
   */
  register(
    source: PausableSource | ObservableSource,
    groupKey: string,
    opts: { watch?: boolean; readSize?: number } = {},
  ): IngressFlow {
    const readSize = opts.readSize ?? DEFAULT_READ_SIZE
    return new SocketFlow(this, this.join(groupKey), source, opts.watch !== false, readSize)
  }

  /**
   * Takes back `n` bytes a flow paid for and will not use (an ingress flow that pauses, or
   * closes, with credit left), up to a full bucket; waiters may go sooner.
   */
  refund(n: number): void {
    if (n <= 0 || this.closed || this.bucket.unlimited) return
    this.bucket.refill(this.clock.now())
    this.bucket.give(n)
    if (this.waitingFlows > 0 && !this.pumping) this.rearm(0)
  }

  /** Releases every waiter (as if unlimited) and stops limiting. Idempotent. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.cancelTimer()
    this.pump()
  }

  // ---- used by the flows (flow.ts) ----

  /** True when `n` bytes may go now; otherwise the flow is queued (or its request grows). */
  acquire(flow: FlowBase, n: number): boolean {
    if (this.closed || this.bucket.unlimited) {
      if (flow.counts) this.bytes += n
      return true
    }
    if (flow.queued) {
      flow.need += n
      flow.group.lastFinish += n
      this.queuedBytes += n
      return false
    }
    if (this.waitingFlows === 0) {
      const b = this.bucket
      b.refill(this.clock.now())
      const half = b.burst / 2
      if (b.available >= half + Math.min(n, half)) {
        b.take(n)
        if (flow.counts) this.bytes += n
        return true
      }
    }
    this.enqueue(flow, n)
    return false
  }

  enqueue(flow: FlowBase, n: number): void {
    const g = flow.group
    flow.need = n
    flow.queued = true
    // Every queued tag is >= V, so a group coming back after a pause goes first, saving nothing.
    flow.start = Math.max(g.lastFinish, this.vtime)
    g.lastFinish = flow.start + n
    flow.next = null
    flow.prev = g.tail
    if (g.tail === null) {
      g.head = flow
      this.heap.push(g)
    } else g.tail.next = flow
    g.tail = flow
    this.queuedBytes += n
    if (this.waitingFlows++ === 0) this.throttledSince = this.clock.now()
    // While pumping, the pump arms the timer when it stops.
    if (!this.pumping && this.timer === undefined) {
      this.bucket.refill(this.clock.now())
      this.rearm(this.bucket.msUntil(this.heap.top()!.head!.need))
    }
  }

  /** Takes a waiting flow out of its queue: granted, or withdrawn (which costs its group nothing). */
  dequeue(flow: FlowBase, withdrawn = true): void {
    const g = flow.group
    const wasHead = flow.prev === null
    if (withdrawn && flow === g.tail) g.lastFinish = flow.start
    if (wasHead) g.head = flow.next
    else flow.prev!.next = flow.next
    if (flow.next === null) g.tail = flow.prev
    else flow.next.prev = flow.prev
    flow.next = flow.prev = null
    flow.queued = false
    this.queuedBytes -= flow.need
    flow.need = 0
    if (wasHead) {
      if (g.head === null) this.heap.remove(g)
      else this.heap.update(g)
    }
    if (--this.waitingFlows === 0) {
      this.throttledMs += this.clock.now() - this.throttledSince
      if (!this.pumping) this.cancelTimer()
    }
  }

  join(key: string): Group {
    let g = this.groups.get(key)
    if (g === undefined) {
      g = new Group(key)
      this.groups.set(key, g)
    }
    g.refs++
    return g
  }

  leave(g: Group): void {
    if (--g.refs === 0) this.groups.delete(g.key)
  }

  // ---- scheduling ----

  private rearm(ms: number): void {
    const due = this.clock.now() + ms
    if (this.timer !== undefined) {
      if (this.timerDue <= due) return
      this.cancelTimer()
    }
    this.timerDue = due
    this.timerIsSoon = ms <= 0
    this.timer = this.timerIsSoon ? this.clock.setSoon(this.onTimer) : this.clock.setTimer(this.onTimer, ms)
  }

  private cancelTimer(): void {
    if (this.timer === undefined) return
    if (this.timerIsSoon) this.clock.clearSoon(this.timer)
    else this.clock.clearTimer(this.timer)
    this.timer = undefined
  }

  /**
   * Grants waiting flows in tag order while the bucket can pay, then arms the timer.
   *
   * A grant that empties its group ends the batch as soon as the next tag in line is not before
   * that group's next one: its peer will most likely ask again within the tick (a promise, a
   * synchronous callback), and granting past it would hand its turn to whoever has more
   * requests queued. The batch goes on at once on setImmediate, with whoever is back by then.
   */
  private pump(): void {
    if (this.pumping) return
    this.pumping = true
    try {
      this.bucket.refill(this.clock.now())
      const free = this.closed || this.bucket.unlimited
      let yieldAt = Number.POSITIVE_INFINITY
      for (;;) {
        const g = this.heap.top()
        if (g === undefined) break
        const f = g.head!
        const n = f.need
        if (!free) {
          if (f.start >= yieldAt) {
            this.rearm(0)
            break
          }
          if (!this.bucket.canTake(n)) {
            this.rearm(this.bucket.msUntil(n))
            break
          }
          this.bucket.take(n)
        }
        if (f.start > this.vtime) this.vtime = f.start
        this.dequeue(f, false)
        if (g.head === null && g.lastFinish < yieldAt) yieldAt = g.lastFinish
        if (f.counts) this.bytes += n
        try {
          f.granted(n)
        } catch (err) {
          // A throwing callback must not leave the others waiting forever.
          this.log?.warn({ err, direction: this.direction }, 'bandwidth grant callback failed')
        }
      }
    } finally {
      this.pumping = false
    }
  }
}
