/**
 * A fixed-size piece bitfield in wire order (bit 7 of byte 0 is piece 0), with a running count
 * so "is this peer a seed" and "how much is left" never need a scan.
 */
export class Bitfield {
  readonly length: number
  readonly buffer: Uint8Array
  private _count = 0

  constructor(length: number) {
    this.length = length
    this.buffer = new Uint8Array((length + 7) >> 3)
  }

  /**
   * Parses a peer's bitfield message body. Returns undefined when the size is wrong or a spare
   * bit past the last piece is set: BEP 3 says to drop such a peer.
   */
  static fromWire(length: number, data: Uint8Array): Bitfield | undefined {
    const bf = new Bitfield(length)
    if (data.length !== bf.buffer.length) return undefined
    const spare = bf.buffer.length * 8 - length
    if (spare > 0 && (data[data.length - 1]! & ((1 << spare) - 1)) !== 0) return undefined
    bf.buffer.set(data)
    let count = 0
    for (let i = 0; i < data.length; i++) count += POPCOUNT[data[i]!]!
    bf._count = count
    return bf
  }

  static full(length: number): Bitfield {
    const bf = new Bitfield(length)
    for (let i = 0; i < length; i++) bf.set(i)
    return bf
  }

  get count(): number {
    return this._count
  }

  get complete(): boolean {
    return this._count === this.length
  }

  get empty(): boolean {
    return this._count === 0
  }

  has(i: number): boolean {
    return (this.buffer[i >> 3]! & (0x80 >> (i & 7))) !== 0
  }

  /** Sets bit i; returns false when it was already set (so callers count each piece once). */
  set(i: number): boolean {
    const byte = i >> 3
    const mask = 0x80 >> (i & 7)
    const b = this.buffer[byte]!
    if ((b & mask) !== 0) return false
    this.buffer[byte] = b | mask
    this._count++
    return true
  }

  /** How many pieces this has that `other` (of the same length) lacks: a peer's use to us. */
  countNotIn(other: Bitfield): number {
    const mine = this.buffer
    const theirs = other.buffer
    let count = 0
    for (let i = 0; i < mine.length; i++) count += POPCOUNT[mine[i]! & ~theirs[i]!]!
    return count
  }

  clear(i: number): boolean {
    const byte = i >> 3
    const mask = 0x80 >> (i & 7)
    const b = this.buffer[byte]!
    if ((b & mask) === 0) return false
    this.buffer[byte] = b & ~mask
    this._count--
    return true
  }
}

const POPCOUNT = new Uint8Array(256)
for (let i = 1; i < 256; i++) POPCOUNT[i] = (i & 1) + POPCOUNT[i >> 1]!
