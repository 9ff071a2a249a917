/**
 * One source paused by several limiters (a peer socket under the host's ingress cap and its
 * download's own cap): it reads only while none of them holds it paused. Each limiter gets its
 * own handle, so one limiter resuming never lets bytes in that another has not paid for.
 */
import type { PausableSource } from './limiter.js'

export class PauseGate {
  private held = 0

  constructor(private readonly source: PausableSource) {}

  /** A pausable view of the source for one limiter; its pause and resume count for it alone. */
  handle(): PausableSource {
    let paused = false
    return {
      pause: () => {
        if (paused) return
        paused = true
        if (this.held++ === 0) this.source.pause()
      },
      resume: () => {
        if (!paused) return
        paused = false
        if (--this.held === 0) this.source.resume()
      },
    }
  }
}
