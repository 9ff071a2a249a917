/**
 * The origin's work in flight (commits, appends, backend transfers, background hashing) and
 * the one signal that stops it: stop() aborts it all and waits for it, so nothing writes to the
 * cache or seeds a blob after the origin has stopped.
 */
import { ShoalError } from '../../errors/index.js'

export class Work {
  #controller = new AbortController()
  readonly #running = new Set<Promise<unknown>>()

  /** Aborted once stop() is called (until start() again). */
  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /** Accepts work again after stop() (an origin started again after a failed start). */
  start(): void {
    if (this.#controller.signal.aborted) this.#controller = new AbortController()
  }

  /** ABORTED once the origin is stopping: no new work then. */
  check(): void {
    if (this.#controller.signal.aborted) throw new ShoalError('ABORTED', 'the origin is stopping')
  }

  /** Makes stop() wait for `p`. */
  track<T>(p: Promise<T>): Promise<T> {
    this.#running.add(p)
    void p.catch(() => undefined).finally(() => this.#running.delete(p))
    return p
  }

  /**
   * Aborts, then waits until neither tracked work nor `others()` (work kept elsewhere, such as
   * backend fetches, which may start more work as they end) is left.
   */
  async stop(others: () => Promise<unknown>[]): Promise<void> {
    this.#controller.abort()
    for (;;) {
      const left = [...this.#running, ...others()]
      if (left.length === 0) return
      await Promise.allSettled(left)
    }
  }
}
