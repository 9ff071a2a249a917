/**
 * Time for the limiters, injectable so tests run on a simulated clock (no real sleeps) and the
 * daemons on a monotonic, sub-millisecond one. A limiter holds at most one timer at a time.
 */

export interface Clock {
  /** Monotonic milliseconds, fractional (performance.now() in production). */
  now(): number
  /** Calls `fn` once after `ms`; must not keep the process alive. */
  setTimer(fn: () => void, ms: number): unknown
  clearTimer(handle: unknown): void
  /**
   * Re-arms a timer from setTimer (`handle`, fired or not; undefined = none yet) to call `fn`
   * once after `ms` from now, and returns its handle. `fn` and `ms` must be the ones the
   * handle was made with: the system clock reuses its Timeout (refresh()), so a timer re-armed
   * over and over (a connection's have batches) allocates nothing.
   */
  rearmTimer(handle: unknown, fn: () => void, ms: number): unknown
  /** Calls `fn` once after the I/O already queued (setImmediate). */
  setSoon(fn: () => void): unknown
  clearSoon(handle: unknown): void
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, ms)
    t.unref() // a throttled transfer is kept alive by its sockets, not by our timer
    return t
  },
  clearTimer(handle) {
    clearTimeout(handle as NodeJS.Timeout)
  },
  rearmTimer(handle, fn, ms) {
    if (handle === undefined) return systemClock.setTimer(fn, ms)
    return (handle as NodeJS.Timeout).refresh()
  },
  setSoon(fn) {
    // Not unref'd: an unref'd immediate does not stop the event loop from blocking in its
    // poll phase, so it runs only after the next I/O event or timer. With a receiver that
    // holds its socket paused there is little I/O, and grants came ~5 times a second
    // (a 64 MiB/s cap between two processes delivered 1.3 MB/s). It runs at once anyway.
    return setImmediate(fn)
  },
  clearSoon(handle) {
    clearImmediate(handle as NodeJS.Immediate)
  },
}

/**
 * A clock that moves only when told to: `advance(ms)` fires due timers in time order.
 * `timerLatenessMs` makes every timer fire that much late, like a busy event loop.
 */
export class ManualClock implements Clock {
  timerLatenessMs = 0
  private t = 0
  private nextId = 1
  private readonly timers = new Map<number, { at: number; fn: () => void }>()

  now(): number {
    return this.t
  }

  setTimer(fn: () => void, ms: number): unknown {
    const id = this.nextId++
    // Like setTimeout: never sooner than 1 ms, so a busy loop cannot spin at one instant.
    this.timers.set(id, { at: this.t + Math.max(1, ms) + this.timerLatenessMs, fn })
    return id
  }

  clearTimer(handle: unknown): void {
    this.timers.delete(handle as number)
  }

  rearmTimer(handle: unknown, fn: () => void, ms: number): unknown {
    if (handle !== undefined) this.clearTimer(handle)
    return this.setTimer(fn, ms)
  }

  /** Runs at the current instant, on the next advance() (advance(0) included). */
  setSoon(fn: () => void): unknown {
    const id = this.nextId++
    this.timers.set(id, { at: this.t, fn })
    return id
  }

  clearSoon(handle: unknown): void {
    this.timers.delete(handle as number)
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, at its time. */
  advance(ms: number): void {
    const end = this.t + ms
    for (;;) {
      let firstId = 0
      let firstAt = Number.POSITIVE_INFINITY
      for (const [id, timer] of this.timers) {
        if (timer.at < firstAt) {
          firstAt = timer.at
          firstId = id
        }
      }
      if (firstId === 0 || firstAt > end) break
      const timer = this.timers.get(firstId)!
      this.timers.delete(firstId)
      this.t = Math.max(this.t, firstAt)
      timer.fn()
    }
    this.t = end
  }

  get pendingTimers(): number {
    return this.timers.size
  }
}

/**
 * Runs `task` every `ms` on `clock` until stop(): the next run is `ms` after the previous one
 * ended, so a slow run never overlaps the next. A run's rejection is the task's to report.
 */
export class Repeat {
  private timer: unknown
  private running = false

  constructor(
    private readonly clock: Clock,
    private readonly ms: number,
    private readonly task: () => Promise<unknown>,
  ) {}

  /** The first run one interval from now; a second start() does nothing. */
  start(): void {
    if (this.running) return
    this.running = true
    this.schedule()
  }

  stop(): void {
    this.running = false
    if (this.timer !== undefined) this.clock.clearTimer(this.timer)
    this.timer = undefined
  }

  private schedule(): void {
    if (!this.running) return
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined
      void this.task()
        .catch(() => undefined)
        .finally(() => this.schedule())
    }, this.ms)
  }
}
