/**
 * Piece selection and piece assembly, free of sockets so they can be unit-tested.
 *
 * Availability is a Uint32Array updated incrementally on bitfield/have/disconnect, so picking
 * a new piece is one pass over the piece table (bounded: pieceLengthFor keeps torrents near
 * 2048 pieces) and continuing a piece costs nothing.
 */
import { createHash } from 'node:crypto'
import { Bitfield } from './bitfield.js'
import { BLOCK_SIZE, type PeerClass } from './types.js'

const BLOCK_FREE = 0
const BLOCK_REQUESTED = 1
const BLOCK_RECEIVED = 2

export class PiecePicker {
  readonly pieceCount: number
  /** How many connected peers have each piece. */
  readonly availability: Uint32Array
  /** Pieces verified and written. */
  readonly have: Bitfield
  /** 1 while a piece is being downloaded, verified or written: never picked twice. */
  private readonly busy: Uint8Array
  private readonly randomFirst: number

  constructor(pieceCount: number, opts: { has?: (i: number) => boolean; randomFirst?: number } = {}) {
    this.pieceCount = pieceCount
    this.availability = new Uint32Array(pieceCount)
    this.have = new Bitfield(pieceCount)
    this.busy = new Uint8Array(pieceCount)
    this.randomFirst = opts.randomFirst ?? 4
    if (opts.has) for (let i = 0; i < pieceCount; i++) if (opts.has(i)) this.have.set(i)
  }

  get complete(): boolean {
    return this.have.complete
  }

  addBitfield(bf: Bitfield): void {
    this.adjust(bf, 1)
  }

  removeBitfield(bf: Bitfield): void {
    this.adjust(bf, -1)
  }

  addHave(i: number): void {
    this.availability[i]!++
  }

  /** A piece we lack and nobody is fetching. */
  wanted(i: number): boolean {
    return this.busy[i] === 0 && !this.have.has(i)
  }

  isBusy(i: number): boolean {
    return this.busy[i] === 1
  }

  setBusy(i: number, busy: boolean): void {
    this.busy[i] = busy ? 1 : 0
  }

  markHave(i: number): boolean {
    this.busy[i] = 0
    return this.have.set(i)
  }

  /**
   * The next piece to start from a peer that has `peerHas`: random for the first few pieces (so
   * a new peer quickly has something to trade), rarest-first afterwards with ties broken by a
   * random starting point. -1 when the peer has nothing we want.
   */
  pick(peerHas: Bitfield): number {
    const n = this.pieceCount
    if (n === 0) return -1
    if (this.have.count < this.randomFirst) {
      // Reservoir sampling over the candidates: uniform without building a list.
      let chosen = -1
      let seen = 0
      for (let i = 0; i < n; i++) {
        if (!peerHas.has(i) || !this.wanted(i)) continue
        seen++
        if (Math.random() * seen < 1) chosen = i
      }
      return chosen
    }
    const start = Math.floor(Math.random() * n)
    let best = -1
    let bestAvail = 0xffffffff
    for (let k = 0; k < n; k++) {
      let i = start + k
      if (i >= n) i -= n
      if (!peerHas.has(i) || !this.wanted(i)) continue
      const a = this.availability[i]!
      if (a < bestAvail) {
        best = i
        bestAvail = a
        if (a <= 1) break // the peer has it, so it cannot be rarer than 1
      }
    }
    return best
  }

  private adjust(bf: Bitfield, delta: 1 | -1): void {
    const bytes = bf.buffer
    const avail = this.availability
    for (let byte = 0; byte < bytes.length; byte++) {
      const b = bytes[byte]!
      if (b === 0) continue
      const base = byte << 3
      for (let bit = 0; bit < 8; bit++) {
        if ((b & (0x80 >> bit)) !== 0) avail[base + bit]! += delta
      }
    }
  }
}

/**
 * One piece being downloaded: a preallocated buffer the blocks are copied into, per-block state,
 * and who contributed, so a SHA-1 failure can be pinned on the right peers and verified bytes
 * can be credited exactly to origins or agents.
 */
export class PieceBuffer<P> {
  readonly index: number
  readonly size: number
  readonly blockCount: number
  readonly data: Buffer
  private readonly state: Uint8Array
  private readonly requester: Array<P | undefined>
  private nextFree = 0
  received = 0
  /** The peer this piece is assigned to, so pieces usually come from one peer. */
  owner: P | undefined
  readonly sources: P[] = []
  originBytes = 0
  agentBytes = 0

  constructor(index: number, size: number) {
    this.index = index
    this.size = size
    this.blockCount = Math.ceil(size / BLOCK_SIZE)
    this.data = Buffer.allocUnsafe(size)
    this.state = new Uint8Array(this.blockCount)
    this.requester = new Array<P | undefined>(this.blockCount)
  }

  blockLength(block: number): number {
    return block === this.blockCount - 1 ? this.size - block * BLOCK_SIZE : BLOCK_SIZE
  }

  get complete(): boolean {
    return this.received === this.blockCount
  }

  /** Index of the next block nobody is fetching, or -1. */
  nextFreeBlock(): number {
    for (let b = this.nextFree; b < this.blockCount; b++) {
      if (this.state[b] === BLOCK_FREE) {
        this.nextFree = b
        return b
      }
    }
    this.nextFree = this.blockCount
    return -1
  }

  hasFreeBlock(): boolean {
    return this.nextFreeBlock() >= 0
  }

  markRequested(block: number, peer: P): void {
    this.state[block] = BLOCK_REQUESTED
    this.requester[block] = peer
    if (block === this.nextFree) this.nextFree++
  }

  /** Frees a block that `peer` was fetching (choke, reject, timeout, disconnect). */
  release(block: number, peer: P): boolean {
    if (this.state[block] !== BLOCK_REQUESTED || this.requester[block] !== peer) return false
    this.state[block] = BLOCK_FREE
    this.requester[block] = undefined
    if (block < this.nextFree) this.nextFree = block
    return true
  }

  /** Whether a block arriving now would be used (not yet received). */
  wants(block: number): boolean {
    return block >= 0 && block < this.blockCount && this.state[block] !== BLOCK_RECEIVED
  }

  /** Copies a block in; false when it was already received (a late duplicate). */
  accept(block: number, data: Uint8Array, peer: P, cls: PeerClass): boolean {
    if (!this.wants(block)) return false
    this.data.set(data, block * BLOCK_SIZE)
    this.state[block] = BLOCK_RECEIVED
    this.requester[block] = undefined
    this.received++
    if (!this.sources.includes(peer)) this.sources.push(peer)
    if (cls === 'origin') this.originBytes += data.length
    else this.agentBytes += data.length
    return true
  }

  verify(expectedSha1: Uint8Array): boolean {
    return createHash('sha1').update(this.data).digest().equals(expectedSha1)
  }

  /** The class that delivered most of the bytes gets the piece (ties go to origins). */
  get majorityClass(): PeerClass {
    return this.agentBytes > this.originBytes ? 'agent' : 'origin'
  }
}
