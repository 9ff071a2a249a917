/**
 * How many requests to keep outstanding at one peer: enough bytes in flight to cover the link's
 * bandwidth-delay product plus a little queue, measured per peer rather than fixed. A fixed
 * depth is either too shallow for a fast link (the sender idles between a block and the next
 * request) or too deep for a slow one (requests queue for seconds, time out, and endgame waits
 * on them).
 *
 *   in flight = rate × (rtt + queueMs), clamped to [minDepth, maxDepth] requests and maxBytes
 *
 * `rate` is what this peer delivered over the last window (an EWMA of ~100 ms windows) and `rtt`
 * the smallest request-to-block latency seen recently: the minimum is the latency without our
 * own queueing, so a deep pipeline does not feed back into an ever deeper one. Until the first
 * window closes the depth is `initialBytes` worth, which is also where it restarts if the peer
 * went quiet. Everything is numbers on the peer: nothing is allocated per block.
 */
import { DEFAULTS } from '../types.js'

export interface PipelineOptions {
  minDepth: number
  maxDepth: number
  /** Cap on bytes requested and not yet received from one peer. */
  maxBytes: number
  /** In flight before anything was measured. */
  initialBytes: number
  /** Queueing we allow at the sender on top of the round trip. */
  queueMs: number
}

/** The engine's pipeline (the Scheduler's default). */
export const DEFAULT_PIPELINE: PipelineOptions = {
  minDepth: DEFAULTS.pipelineMinDepth,
  maxDepth: DEFAULTS.pipelineDepth,
  maxBytes: DEFAULTS.pipelineMaxBytes,
  initialBytes: DEFAULTS.pipelineInitialBytes,
  queueMs: DEFAULTS.pipelineQueueMs,
}

const WINDOW_MS = 100
/** The rtt floor is forgotten after this long, so a route that got slower is noticed. */
const RTT_MEMORY_MS = 10_000

export class Pipeline {
  /** Bytes per second, 0 until the first window closed. */
  rate = 0
  /** Smallest latency seen (ms); Infinity until a block arrived. */
  rttMin = Number.POSITIVE_INFINITY
  private windowStart = 0
  private windowBytes = 0
  private rttSince = 0
  private lastAt = 0

  /** A block of `bytes` arrived `latencyMs` after it was requested. */
  onBlock(bytes: number, latencyMs: number, now: number): void {
    if (this.windowStart === 0 || now - this.lastAt > 10 * WINDOW_MS) {
      // First block, or the first after a pause: idle time is not a rate.
      this.windowStart = now - Math.max(1, Math.min(latencyMs, WINDOW_MS))
      this.windowBytes = 0
    }
    this.lastAt = now
    this.windowBytes += bytes
    const elapsed = now - this.windowStart
    if (elapsed >= WINDOW_MS) {
      const r = (this.windowBytes * 1000) / elapsed
      this.rate = this.rate === 0 ? r : this.rate * 0.5 + r * 0.5
      this.windowStart = now
      this.windowBytes = 0
    }
    if (latencyMs < this.rttMin || now - this.rttSince > RTT_MEMORY_MS) {
      this.rttMin = Math.max(0, latencyMs)
      this.rttSince = now
    }
  }

  /** Requests to keep outstanding for blocks of `blockSize`, at most `peerLimit` (its reqq). */
  depth(blockSize: number, o: PipelineOptions, peerLimit: number): number {
    const max = Math.max(1, Math.min(o.maxDepth, peerLimit, Math.floor(o.maxBytes / blockSize)))
    const rtt = Number.isFinite(this.rttMin) ? this.rttMin : 0
    const bytes = this.rate > 0 ? (this.rate * (rtt + o.queueMs)) / 1000 : o.initialBytes
    const want = Math.ceil(bytes / blockSize) + 1
    return Math.max(Math.min(o.minDepth, max), Math.min(want, max))
  }
}
