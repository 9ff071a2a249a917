/**
 * Piece selection and piece assembly, free of sockets so they can be unit-tested.
 *
 * Availability is a Uint32Array updated incrementally on bitfield/have/disconnect, so picking
 * a new piece is one pass over the piece table (bounded: pieceLengthFor keeps torrents near
 * 2048 pieces) and continuing a piece costs nothing. PiecePicker owns it and is its only
 * writer: the Downloader reports every change to a peer's pieces (PeerDownload.bits) through
 * peerHas / peerLost / peerHasPiece / peerLostPiece, and others read it through `availability`.
 * It also owns `have` and which pieces are busy (in flight); the Scheduler owns PieceBuffers.
 */
import { createHash } from 'node:crypto'
import { BLOCK_SIZE, type PeerClass } from '../types.js'
import { Bitfield } from '../wire/bitfield.js'

const BLOCK_FREE = 0
/** The buffer of every piece kept without its bytes. */
const NO_PAYLOAD = Buffer.alloc(0)
const BLOCK_REQUESTED = 1
const BLOCK_RECEIVED = 2

export class PiecePicker {
  readonly pieceCount: number
  /** How many attached peers have each piece: the sum of their PeerDownload.bits. */
  private readonly avail: Uint32Array
  /** Pieces verified and written. */
  readonly have: Bitfield
  /** 1 while a piece is being downloaded, verified or written: never picked twice. */
  private readonly busy: Uint8Array
  private readonly randomFirst: number
  /** Pieces we lack that nobody fetches: 0 means every missing piece is in flight (endgame). */
  private _startable: number

  constructor(pieceCount: number, opts: { has?: (i: number) => boolean; randomFirst?: number } = {}) {
    this.pieceCount = pieceCount
    this.avail = new Uint32Array(pieceCount)
    this.have = new Bitfield(pieceCount)
    this.busy = new Uint8Array(pieceCount)
    this.randomFirst = opts.randomFirst ?? 4
    if (opts.has) for (let i = 0; i < pieceCount; i++) if (opts.has(i)) this.have.set(i)
    this._startable = pieceCount - this.have.count
  }

  get startable(): number {
    return this._startable
  }

  get complete(): boolean {
    return this.have.complete
  }

  /** How many attached peers have each piece (read only: the methods below change it). */
  get availability(): ArrayLike<number> {
    return this.avail
  }

  /** A peer's pieces now count (it attached, or sent its bitfield / have-all). */
  peerHas(bits: Bitfield): void {
    this.adjust(bits, 1)
  }

  /** A peer's pieces no longer count (it closed, or its bitfield was replaced). */
  peerLost(bits: Bitfield): void {
    this.adjust(bits, -1)
  }

  /** A peer gained piece `i` (a have). */
  peerHasPiece(i: number): void {
    this.avail[i]!++
  }

  /** A peer will not serve piece `i` after all (it rejected it while unchoking us). */
  peerLostPiece(i: number): void {
    this.avail[i]!--
  }

  /** A piece we lack and nobody is fetching. */
  wanted(i: number): boolean {
    return this.busy[i] === 0 && !this.have.has(i)
  }

  isBusy(i: number): boolean {
    return this.busy[i] === 1
  }

  setBusy(i: number, busy: boolean): void {
    const b = busy ? 1 : 0
    if (this.busy[i] === b) return
    this.busy[i] = b
    if (!this.have.has(i)) this._startable += busy ? -1 : 1
  }

  markHave(i: number): boolean {
    const wasBusy = this.busy[i] === 1
    this.busy[i] = 0
    if (!this.have.set(i)) return false
    if (!wasBusy) this._startable--
    return true
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
      const a = this.avail[i]!
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
    const avail = this.avail
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
 * can be credited exactly to origins or agents. The block size is fixed per piece (the block
 * size negotiated with the peer that started it); any peer whose own block size is at least as
 * large can help finish it. In endgame a block may be requested from several peers at once:
 * `pending` counts those requests, and the block is free again only when all were released.
 */
export class PieceBuffer<P> {
  readonly index: number
  readonly size: number
  readonly blockSize: number
  readonly blockCount: number
  /**
   * Replaced by the block itself when the piece is one block the wire reader gave up (accept
   * with `own`), and by the buffer the hash worker hands back (the same memory).
   */
  data: Buffer
  private readonly state: Uint8Array
  /** Outstanding requests per block (1 normally, more in endgame). */
  private readonly pending: Uint8Array
  private readonly requester: Array<P | undefined>
  private nextFree = 0
  received = 0
  /** The peer this piece is assigned to, so pieces usually come from one peer. */
  owner: P | undefined
  readonly sources: P[] = []
  originBytes = 0
  agentBytes = 0

  /**
   * Without `payload` the piece keeps no bytes: blocks are accounted for but not copied, and
   * `data` stays empty (the swarm simulator, test/bench/sim, models thousands of hosts).
   */
  private readonly payload: boolean

  /** `data`, when given, is a recycled buffer of exactly `size` bytes (every block overwrites it). */
  constructor(index: number, size: number, blockSize: number = BLOCK_SIZE, data?: Buffer, payload = true) {
    this.index = index
    this.size = size
    this.blockSize = blockSize
    this.blockCount = Math.ceil(size / blockSize)
    this.payload = payload
    if (!payload) this.data = NO_PAYLOAD
    else this.data = data !== undefined && data.length === size ? data : Buffer.allocUnsafe(size)
    this.state = new Uint8Array(this.blockCount)
    this.pending = new Uint8Array(this.blockCount)
    this.requester = new Array<P | undefined>(this.blockCount)
  }

  blockLength(block: number): number {
    return block === this.blockCount - 1 ? this.size - block * this.blockSize : this.blockSize
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

  /** Requested from someone and not received yet. */
  isRequested(block: number): boolean {
    return this.state[block] === BLOCK_REQUESTED
  }

  /** Outstanding requests for the block. */
  requests(block: number): number {
    return this.pending[block]!
  }

  /** The peer the block was first requested from (undefined once it released it). */
  requesterOf(block: number): P | undefined {
    return this.requester[block]
  }

  markRequested(block: number, peer: P): void {
    this.state[block] = BLOCK_REQUESTED
    this.pending[block] = 1
    this.requester[block] = peer
    if (block === this.nextFree) this.nextFree++
  }

  /** Endgame: the block, already requested, is also requested from another peer. */
  addRequest(block: number): void {
    this.pending[block]!++
  }

  /**
   * Withdraws one request for a block (choke, reject, timeout, disconnect, cancel). With a
   * single request only its requester may release it; the block is free once none is left.
   */
  release(block: number, peer: P): boolean {
    if (this.state[block] !== BLOCK_REQUESTED) return false
    const n = this.pending[block]!
    const mine = this.requester[block] === peer
    if (n <= 1 && !mine && this.requester[block] !== undefined) return false
    if (mine) this.requester[block] = undefined
    this.pending[block] = n - 1
    if (n <= 1) {
      this.state[block] = BLOCK_FREE
      if (block < this.nextFree) this.nextFree = block
    }
    return true
  }

  /** Whether a block arriving now would be used (not yet received). */
  wants(block: number): boolean {
    return block >= 0 && block < this.blockCount && this.state[block] !== BLOCK_RECEIVED
  }

  /**
   * Copies a block in; false when it was already received (a late duplicate). With `own`, the
   * piece is this one block, `data` is exactly its size and becomes its buffer (the caller gave
   * the old one away, so nothing may be copied into it any more).
   */
  accept(block: number, data: Uint8Array, peer: P, cls: PeerClass, own = false): boolean {
    if (!this.wants(block)) return false
    if (own) this.data = data as Buffer
    else if (this.payload) this.data.set(data, block * this.blockSize)
    this.state[block] = BLOCK_RECEIVED
    this.pending[block] = 0
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
