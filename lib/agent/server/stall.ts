/**
 * Fails a download that makes no progress: no verified piece (or, before the first piece, no
 * metainfo) for `stallMs`. A large blob may take as long as it needs while pieces keep coming.
 */
import type { Digest } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'

export class StallWatchdog {
  private readonly controller = new AbortController()
  private timer: NodeJS.Timeout | undefined
  reason: ShoalError | undefined

  constructor(
    private readonly stallMs: number,
    private readonly digest: Digest,
  ) {
    this.timer = setTimeout(() => this.fire(), stallMs)
    this.timer.unref()
  }

  get signal(): AbortSignal {
    return this.controller.signal
  }

  /** Re-arms the deadline whenever the piece count moves. */
  watch(stats: () => { piecesFromOrigins: number; piecesFromAgents: number } | undefined): void {
    clearTimeout(this.timer)
    let last = -1
    let lastChange = Date.now()
    this.timer = setInterval(
      () => {
        const s = stats()
        const done = s ? s.piecesFromOrigins + s.piecesFromAgents : 0
        if (done !== last) {
          last = done
          lastChange = Date.now()
        } else if (Date.now() - lastChange >= this.stallMs) {
          this.fire()
        }
      },
      Math.min(1000, this.stallMs),
    )
    this.timer.unref()
  }

  stop(): void {
    clearTimeout(this.timer)
    clearInterval(this.timer)
  }

  private fire(): void {
    this.stop()
    this.reason = new ShoalError(
      'TIMEOUT',
      `download of ${this.digest} made no progress for ${Math.round(this.stallMs / 1000)} s (no peer served a piece)`,
    )
    this.controller.abort(this.reason)
  }
}
