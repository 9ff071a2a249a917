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

  /** `problem`: the latest thing that went wrong (a bad piece), named in the stall message. */
  constructor(
    private readonly stallMs: number,
    private readonly digest: Digest,
    private readonly problem: () => string | undefined = () => undefined,
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
    const problem = this.problem()
    const why =
      problem === undefined
        ? 'no peer served a piece'
        : `no peer served a good piece; the last bad one: ${problem}`
    this.reason = new ShoalError(
      'TIMEOUT',
      `download of ${this.digest} made no progress for ${Math.round(this.stallMs / 1000)} s (${why})`,
    )
    this.controller.abort(this.reason)
  }
}
