/**
 * A peer's incoming requests waiting to be served: a bounded FIFO of (piece, offset, length)
 * triples in one typed array, so queueing a request allocates nothing. A cancel leaves a hole
 * (length 0) that shift() skips; holes count against the capacity until they reach the head,
 * which is fine: a peer that fills the queue with cancelled requests is flooding us anyway.
 */
export class RequestQueue {
  private readonly slots: Uint32Array
  private readonly capacity: number
  private head = 0
  private count = 0
  /** Live (not cancelled) entries. */
  size = 0
  /** Fields of the entry the last shift() returned. */
  index = 0
  offset = 0
  length = 0

  constructor(capacity: number) {
    this.capacity = capacity
    this.slots = new Uint32Array(capacity * 3)
  }

  get full(): boolean {
    return this.count >= this.capacity
  }

  /** Appends a request; false when the queue is full. */
  push(index: number, offset: number, length: number): boolean {
    if (this.count >= this.capacity) return false
    let slot = this.head + this.count
    if (slot >= this.capacity) slot -= this.capacity
    const s = this.slots
    s[slot * 3] = index
    s[slot * 3 + 1] = offset
    s[slot * 3 + 2] = length
    this.count++
    this.size++
    return true
  }

  /** Takes the oldest live entry into index/offset/length; false when there is none. */
  shift(): boolean {
    const s = this.slots
    while (this.count > 0) {
      const slot = this.head
      this.head = slot + 1 === this.capacity ? 0 : slot + 1
      this.count--
      const length = s[slot * 3 + 2]!
      if (length === 0) continue
      this.index = s[slot * 3]!
      this.offset = s[slot * 3 + 1]!
      this.length = length
      this.size--
      return true
    }
    return false
  }

  /**
   * Length of the oldest live entry without taking it (0 when there is none); cancelled
   * entries ahead of it are dropped on the way. The uploader pays for a block before taking
   * it, so a request cancelled while it waited for bandwidth is never sent.
   */
  peekLength(): number {
    const s = this.slots
    while (this.count > 0) {
      const length = s[this.head * 3 + 2]!
      if (length !== 0) return length
      this.head = this.head + 1 === this.capacity ? 0 : this.head + 1
      this.count--
    }
    return 0
  }

  /** Cancels a queued request; false when it was not queued (already served, or never asked). */
  remove(index: number, offset: number, length: number): boolean {
    const s = this.slots
    for (let k = 0; k < this.count; k++) {
      let slot = this.head + k
      if (slot >= this.capacity) slot -= this.capacity
      if (s[slot * 3 + 2] === length && s[slot * 3] === index && s[slot * 3 + 1] === offset) {
        s[slot * 3 + 2] = 0
        this.size--
        return true
      }
    }
    return false
  }

  clear(): void {
    this.head = 0
    this.count = 0
    this.size = 0
  }
}
