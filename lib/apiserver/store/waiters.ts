/** Watchers parked until the store's counter passes their cursor (or a timeout, or abort). */
export class ChangeWaiters {
  private readonly waiting = new Set<{ after: number; done: () => void }>()

  wait(current: number, after: number, ms: number, signal?: AbortSignal): Promise<void> {
    if (current > after || signal?.aborted) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const entry = {
        after,
        done: () => {
          clearTimeout(timer)
          signal?.removeEventListener('abort', entry.done)
          this.waiting.delete(entry)
          resolve()
        },
      }
      const timer = setTimeout(entry.done, ms)
      signal?.addEventListener('abort', entry.done, { once: true })
      this.waiting.add(entry)
    })
  }

  /** The counter is now `rv`: wakes everyone behind it. */
  notify(rv: number): void {
    for (const w of this.waiting) if (w.after < rv) w.done()
  }

  wakeAll(): void {
    for (const w of this.waiting) w.done()
  }
}
