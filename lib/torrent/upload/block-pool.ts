/**
 * Buffers for the blocks we upload, lent out for one storage read and socket write and given
 * back when the socket has taken the bytes. A fresh buffer per block (256 KiB between Shoal
 * peers) was, with the socket reads, what kept V8's garbage collector busy (every large
 * Buffer is memory V8 counts against its external-memory limit, and going over it starts a
 * full mark-compact), and each one was fresh pages the kernel had to fault in and zero.
 *
 * Buffers are `size` bytes (the engine's largest block); a longer request gets a buffer of
 * its own, not pooled. At most `maxFree` wait in the pool: as many as were in flight at once,
 * bounded.
 */
export class BlockPool {
  private readonly free: Buffer[] = []

  constructor(
    readonly size: number,
    private readonly maxFree: number,
  ) {}

  /** A buffer of at least `length` bytes (pooled when length ≤ size). */
  take(length: number): Buffer {
    if (length > this.size) return Buffer.allocUnsafe(length)
    return this.free.pop() ?? Buffer.allocUnsafe(this.size)
  }

  /** Gives a buffer from take() back; others (and overflow) are left to the collector. */
  give(buf: Buffer): void {
    if (buf.length === this.size && this.free.length < this.maxFree) this.free.push(buf)
  }

  /** Buffers waiting in the pool. */
  get idle(): number {
    return this.free.length
  }
}
