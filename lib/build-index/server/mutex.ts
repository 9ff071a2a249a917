/**
 * Serialises async work per key inside one process. Two PUTs of the same new versioned tag
 * must not both read "absent" and both write; the backend has no compare-and-swap, so the
 * check-then-write runs under the tag's lock. Entries are removed when their queue drains,
 * so the map only holds keys with work in flight.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>()

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>((resolve) => {
      release = resolve
    })
    const tail = prev.then(() => mine)
    this.tails.set(key, tail)
    await prev
    try {
      return await fn()
    } finally {
      release()
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }

  /** Keys currently locked or queued (for tests and metrics). */
  get size(): number {
    return this.tails.size
  }
}
