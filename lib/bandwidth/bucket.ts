/**
 * A token bucket in bytes, refilled lazily from the clock on each call (no timer of its own).
 *
 * Tokens are a float64, so rates from bytes/s to GB/s and sub-millisecond clocks keep their
 * precision. A take may overdraw the bucket: a message larger than the burst (a 1 MiB block
 * under a 256 KiB burst, a 64 KiB socket read) is allowed once the bucket is full and leaves
 * it in debt, which the next takes wait out. So any message size passes, and the long-run
 * average is exactly the rate: over any window T, at most rate·T + burst + one message.
 */

/** Rates above this are surely a mistake (and would cost float precision): 1 TB/s. */
export const MAX_RATE = 1e12

/** Auto burst: this many milliseconds' worth of the rate... */
export const AUTO_BURST_MS = 40
/** ...but never less than one 16 KiB block. */
export const MIN_AUTO_BURST = 16 * 1024

/**
 * The burst used when none is configured (0). 40 ms of the rate keeps the highest 1-s window
 * within 4 % of the cap, and still covers timer and event-loop lateness, which would otherwise
 * waste tokens on a busy host.
 */
export function autoBurst(bytesPerSec: number): number {
  if (bytesPerSec <= 0) return 0
  return Math.max(MIN_AUTO_BURST, Math.ceil((bytesPerSec * AUTO_BURST_MS) / 1000))
}

export class TokenBucket {
  private perMs = 0
  private bytesPerSec = 0
  private burstBytes = 0
  private tokens = 0
  private last: number

  /** `bytesPerSec` 0 = unlimited; `burst` 0 = autoBurst(rate). Starts full. */
  constructor(bytesPerSec: number, burst: number, now: number) {
    this.last = now
    this.configure(bytesPerSec, burst, now)
  }

  get rate(): number {
    return this.bytesPerSec
  }

  get burst(): number {
    return this.burstBytes
  }

  get unlimited(): boolean {
    return this.bytesPerSec === 0
  }

  /** Changes rate and burst; what accrued so far accrued at the old rate. */
  configure(bytesPerSec: number, burst: number, now: number): void {
    const wasUnlimited = this.bytesPerSec === 0
    this.refill(now)
    this.bytesPerSec = bytesPerSec
    this.perMs = bytesPerSec / 1000
    this.burstBytes = bytesPerSec === 0 ? 0 : burst > 0 ? burst : autoBurst(bytesPerSec)
    // Leaving unlimited mode starts a fresh, full bucket; otherwise keep what was saved, capped.
    if (wasUnlimited) this.tokens = this.burstBytes
    else if (this.tokens > this.burstBytes) this.tokens = this.burstBytes
  }

  refill(now: number): void {
    const dt = now - this.last
    this.last = now
    if (dt <= 0 || this.perMs === 0) return
    const t = this.tokens + dt * this.perMs
    this.tokens = Math.min(t, this.burstBytes)
  }

  /** Tokens now (negative while in debt). Call refill first. */
  get available(): number {
    return this.tokens
  }

  /** Whether `n` bytes may go now (a message larger than the burst needs a full bucket). */
  canTake(n: number): boolean {
    if (this.perMs === 0) return true
    return this.tokens >= Math.min(n, this.burstBytes)
  }

  take(n: number): void {
    if (this.perMs !== 0) this.tokens -= n
  }

  /** Gives back `n` bytes taken and not used (never beyond a full bucket). */
  give(n: number): void {
    if (this.perMs !== 0) this.tokens = Math.min(this.tokens + n, this.burstBytes)
  }

  /** Refill, then take `n` if it may go now. */
  tryTake(n: number, now: number): boolean {
    this.refill(now)
    if (!this.canTake(n)) return false
    this.take(n)
    return true
  }

  /** Milliseconds until `n` bytes may go (0 = now). Call refill first. */
  msUntil(n: number): number {
    if (this.perMs === 0) return 0
    const need = Math.min(n, this.burstBytes) - this.tokens
    return need <= 0 ? 0 : need / this.perMs
  }
}
