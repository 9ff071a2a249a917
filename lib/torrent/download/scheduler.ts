/**
 * Request scheduling for one torrent: which blocks to ask which peer for, and where arriving
 * blocks go. Pieces have an owner so a piece normally comes from a single peer (a SHA-1
 * failure then names the culprit); blocks freed by choke, reject, timeout or disconnect are
 * re-issued to whoever can serve them, so one slow peer never stalls the download. Each peer's
 * pipeline is sized to its measured rate × round trip (pipeline.ts). When every missing block
 * is requested (endgame), idle peers also request blocks already requested elsewhere, and the
 * first copy to arrive cancels the others.
 *
 * A block is keyed by piece * unitsPerPiece + offset / 16 KiB: blocks are aligned to their
 * piece's block size, a multiple of 16 KiB, so a key names one block whatever the size.
 *
 * Owns the pieces in flight (PieceBuffers) and, in each peer's PeerDownload (peer-download.ts),
 * the request state: outstanding, withdrawn, owned, pipeline, snubbedUntil, stalls. It reads
 * what the Downloader keeps there (bits, interesting, peerChoking) and never changes it.
 */
import type { MetaInfo } from '../../core/index.js'
import { BLOCK_SIZE, DEFAULTS, MAX_BLOCK_SIZE } from '../types.js'
import type { Peer } from '../wire/peer.js'
import { ownDownload } from './peer-download.js'
import { PieceBuffer, type PiecePicker } from './picker.js'
import { DEFAULT_PIPELINE, type PipelineOptions } from './pipeline.js'

export type BlockResult =
  /** Requested from this peer but not needed any more (a duplicate, or its piece completed). */
  | { kind: 'ignored' }
  /** Never requested from this peer (or so long ago we forgot): dropped, never stored. */
  | { kind: 'unrequested' }
  | { kind: 'accepted'; piece: PieceBuffer<Peer> | undefined }
  | { kind: 'invalid'; why: string }

// Shared results, so the per-block path allocates nothing (only a completed piece, once per
// piece, and protocol violations, which close the connection, build a new object).
const IGNORED: BlockResult = Object.freeze({ kind: 'ignored' })
const UNREQUESTED: BlockResult = Object.freeze({ kind: 'unrequested' })
const ACCEPTED: BlockResult = Object.freeze({ kind: 'accepted', piece: undefined })

export interface SchedulerOptions {
  /** A fixed number of requests per peer (tests); otherwise sized per peer by its Pipeline. */
  depth?: number
  pipeline?: PipelineOptions
  /** Memory for pieces being assembled. */
  maxActiveBytes?: number
  /** Extra requests for one block in endgame. */
  endgameDuplicates?: number
  /** false: pieces keep no bytes (PieceBuffer's payload; the swarm simulator). Default true. */
  payload?: boolean
}

export class Scheduler {
  readonly picker: PiecePicker
  private readonly meta: MetaInfo
  private readonly unitsPerPiece: number
  /** Pieces being downloaded, by index. */
  readonly active = new Map<number, PieceBuffer<Peer>>()
  private activeBytes = 0
  private readonly maxActiveBytes: number
  private readonly fixedDepth: number
  private readonly pipe: PipelineOptions
  private readonly maxRequestsPerBlock: number
  private readonly payload: boolean
  /** Peers holding endgame duplicates: a block arriving from one cancels it at the others. */
  private readonly dupHolders = new Set<Peer>()
  /**
   * Buffers of finished pieces, reused for new ones: a piece buffer is too large for Node's
   * buffer pool, and allocating one per piece kept the garbage collector busy.
   */
  private readonly spare: Buffer[] = []

  constructor(meta: MetaInfo, picker: PiecePicker, opts: SchedulerOptions = {}) {
    this.meta = meta
    this.picker = picker
    this.fixedDepth = opts.depth ?? 0
    this.pipe = opts.pipeline ?? DEFAULT_PIPELINE
    this.maxActiveBytes = opts.maxActiveBytes ?? DEFAULTS.maxActiveBytes
    this.maxRequestsPerBlock = 1 + (opts.endgameDuplicates ?? DEFAULTS.endgameDuplicates)
    this.payload = opts.payload ?? true
    this.unitsPerPiece = Math.ceil(meta.pieceLength / BLOCK_SIZE)
  }

  /** True once every missing piece is being fetched: duplicates are allowed. */
  get endgame(): boolean {
    return this.picker.startable === 0 && this.active.size > 0
  }

  /** Requests to keep outstanding at this peer. */
  depthFor(peer: Peer): number {
    if (this.fixedDepth > 0) return this.fixedDepth
    return ownDownload(peer).pipeline.depth(peer.blockSize, this.pipe, peer.reqq)
  }

  /** Tops up every peer's pipeline, responsive peers first so they get released blocks. */
  fillAll(peers: Iterable<Peer>, now: number): void {
    const snubbed: Peer[] = []
    for (const peer of peers) {
      if (now < peer.down.snubbedUntil) snubbed.push(peer)
      else this.fill(peer, now)
    }
    for (const peer of snubbed) this.fill(peer, now)
  }

  /**
   * After a block arrived: tops up once a quarter of the pipeline is free, so requests go out
   * in batches (one write for several) rather than one per block received.
   */
  refill(peer: Peer, now: number): void {
    const depth = now < peer.down.snubbedUntil ? 1 : this.depthFor(peer)
    if (peer.down.outstanding.size <= depth - Math.max(1, depth >> 2)) this.fill(peer, now)
  }

  /** Tops up the peer's request pipeline. */
  fill(peer: Peer, now: number): void {
    const d = peer.down
    if (peer.closed || d.peerChoking || !peer.amInterested || d.bits === undefined) return
    const snubbed = now < d.snubbedUntil
    const depth = snubbed ? 1 : this.depthFor(peer)
    const outstanding = d.outstanding
    while (outstanding.size < depth) {
      const piece = this.nextPieceFor(peer, snubbed)
      if (piece === undefined) {
        if (!snubbed && this.picker.startable === 0) this.duplicate(peer, depth, now)
        return
      }
      let b = piece.nextFreeBlock()
      while (b >= 0 && outstanding.size < depth) {
        piece.markRequested(b, peer)
        this.send(peer, piece, b, now)
        b = piece.nextFreeBlock()
      }
    }
  }

  /**
   * A block arrived. Only blocks we asked *this* peer for are used: a block sprayed into a
   * piece someone else is supplying would make that peer share the blame (and the ban) when
   * the piece fails SHA-1. Such blocks are dropped without a word (BEP 6 allows a peer to
   * answer a cancel with the block, so an unknown block is not proof of hostility). A late
   * block, requested from this peer before a timeout or choke withdrew the request, is still
   * used if the piece needs it; duplicates are dropped, and a block that arrives first cancels
   * the other requests for it. A block at an offset or of a size we never ask for is a
   * protocol violation.
   */
  onBlock(peer: Peer, index: number, offset: number, data: Buffer, now: number): BlockResult {
    if (index >= this.meta.pieceCount || offset % BLOCK_SIZE !== 0) {
      return { kind: 'invalid', why: `unexpected block ${index}:${offset}` }
    }
    const size = this.meta.pieceSize(index)
    if (offset >= size || offset + data.length > size || data.length > MAX_BLOCK_SIZE) {
      return { kind: 'invalid', why: `block ${index}:${offset} has ${data.length} bytes` }
    }
    const d = ownDownload(peer)
    const key = index * this.unitsPerPiece + offset / BLOCK_SIZE
    const piece = this.active.get(index)
    const b = piece === undefined ? 0 : offset / piece.blockSize
    if (piece !== undefined && (!Number.isInteger(b) || data.length !== piece.blockLength(b))) {
      if (d.outstanding.has(key)) {
        return { kind: 'invalid', why: `block ${index}:${offset} has ${data.length} bytes` }
      }
      // A late block may belong to an earlier attempt at the piece, with another block size.
      return d.withdrawn.delete(key) ? IGNORED : UNREQUESTED
    }
    const requestedAt = d.outstanding.get(key)
    if (requestedAt !== undefined) d.outstanding.delete(key)
    else if (!d.withdrawn.delete(key)) return UNREQUESTED
    // Not wanted: a duplicate, or a block of a piece that completed or was reset meanwhile.
    if (piece === undefined || !piece.wants(b)) return IGNORED
    if (requestedAt !== undefined) d.pipeline.onBlock(data.length, now - requestedAt, now)
    const first = piece.requesterOf(b)
    const others = piece.requests(b) > 1 || (first !== undefined && first !== peer)
    // A piece of one block gathered whole by the wire reader: swap buffers instead of copying.
    const own =
      piece.blockCount === 1 && data.length === piece.size && peer.adoptBlock(data as Buffer, piece.data)
    piece.accept(b, data, peer, peer.cls, own)
    if (others) this.cancelOthers(peer, piece, b, key, first)
    if (!piece.complete) return ACCEPTED
    this.detach(piece)
    return { kind: 'accepted', piece }
  }

  /**
   * Forgets a finished piece: no more requests go to it. The picker keeps it busy, and its
   * bytes count against maxActiveBytes, until settle(): it is still being hashed and written.
   */
  detach(piece: PieceBuffer<Peer>): void {
    if (this.active.get(piece.index) !== piece) return
    this.active.delete(piece.index)
    this.disown(piece)
  }

  /**
   * A detached piece is written (or given up): its memory no longer counts, and with `reuse`
   * its buffer serves a later piece (storage keeps no reference once writePiece resolved).
   * Spares are kept while they and the pieces in flight fit the budget, so piece memory stays
   * within maxActiveBytes and is allocated once: a buffer dropped for the collector lingers
   * until a GC (a 4 GiB pull piled up 280 MiB of them, which the RSS showed), and a fresh
   * one is memory the kernel must fault in.
   */
  settle(piece: PieceBuffer<Peer>, reuse: boolean): void {
    this.activeBytes -= piece.size
    if (
      reuse &&
      piece.data.length === this.meta.pieceLength &&
      (this.spare.length + 1) * this.meta.pieceLength + this.activeBytes <= this.maxActiveBytes
    )
      this.spare.push(piece.data)
  }

  /**
   * The peer refused a block: it will not serve that piece, so stop counting on it for it.
   * Returns false when the request was not outstanding: BEP 6 peers answer our cancels (and
   * requests a timeout withdrew) with rejects, which say nothing about the piece.
   */
  onReject(peer: Peer, index: number, offset: number): boolean {
    const d = ownDownload(peer)
    const key = index * this.unitsPerPiece + Math.floor(offset / BLOCK_SIZE)
    if (!d.outstanding.delete(key)) {
      d.withdrawn.delete(key) // it will not come late either
      return false
    }
    const piece = this.active.get(index)
    if (piece === undefined) return true
    const b = offset / piece.blockSize
    if (Number.isInteger(b)) piece.release(b, peer)
    if (piece.owner === peer) this.disown(piece)
    return true
  }

  /**
   * Frees everything the peer was fetching; with `cancel`, tells the peer too (timeouts).
   * The freed requests become the peer's `withdrawn` set, so a block it still sends for one of
   * them is accepted as late rather than dropped as unrequested. Only the latest batch is kept
   * (the set is replaced, not grown), which bounds it by the pipeline depth.
   */
  releaseAll(peer: Peer, cancel: boolean): void {
    const d = ownDownload(peer)
    const units = this.unitsPerPiece
    const withdrawn = d.withdrawn
    withdrawn.clear()
    for (const key of d.outstanding.keys()) {
      if (!peer.closed) withdrawn.add(key)
      const index = Math.floor(key / units)
      const offset = (key - index * units) * BLOCK_SIZE
      const piece = this.active.get(index)
      if (piece === undefined) continue
      const b = offset / piece.blockSize
      if (piece.release(b, peer) && cancel && !peer.closed) {
        peer.sendCancel(index, offset, piece.blockLength(b))
      }
    }
    d.outstanding.clear()
    this.dupHolders.delete(peer)
    for (const piece of d.owned) piece.owner = undefined
    d.owned.length = 0
  }

  /**
   * Peers whose oldest request is older than `timeoutMs` (the Map keeps insertion order, so
   * that is its first entry): release, cancel and snub them, so others fetch those blocks, and
   * count a stall against them. Returns the peers that stalled.
   */
  expire(peers: Iterable<Peer>, now: number, timeoutMs: number): Peer[] {
    let stalled: Peer[] | undefined
    for (const peer of peers) {
      const d = ownDownload(peer)
      const oldest = d.outstanding.values().next()
      if (oldest.done || now - oldest.value < timeoutMs) continue
      peer.log.debug({ peer: peer.addr, outstanding: d.outstanding.size }, 'requests timed out; re-issuing')
      this.releaseAll(peer, true)
      d.snubbedUntil = now + timeoutMs
      d.stalls++
      stalled ??= []
      stalled.push(peer)
    }
    return stalled ?? []
  }

  /** Lets the spare piece buffers go (the download is over). */
  dropSpares(): void {
    this.spare.length = 0
  }

  /** Makes a piece wanted again (it failed verification, or could not be written). */
  reset(index: number): void {
    const piece = this.active.get(index)
    if (piece !== undefined) {
      this.detach(piece)
      this.settle(piece, false)
    }
    this.picker.setBusy(index, false)
  }

  private send(peer: Peer, piece: PieceBuffer<Peer>, b: number, now: number): void {
    const offset = b * piece.blockSize
    ownDownload(peer).outstanding.set(piece.index * this.unitsPerPiece + offset / BLOCK_SIZE, now)
    peer.sendRequest(piece.index, offset, piece.blockLength(b))
  }

  /**
   * Endgame: every missing block is requested, so this peer, which has room, also asks for
   * blocks others are fetching (at most maxRequestsPerBlock requests per block): the last
   * pieces then come from whoever is fastest instead of waiting on the slowest peer.
   */
  private duplicate(peer: Peer, depth: number, now: number): void {
    const d = peer.down
    const bits = d.bits!
    const outstanding = d.outstanding
    for (const piece of this.active.values()) {
      if (!bits.has(piece.index) || piece.blockSize > peer.blockSize) continue
      const base = piece.index * this.unitsPerPiece
      const step = piece.blockSize / BLOCK_SIZE
      for (let b = 0; b < piece.blockCount; b++) {
        if (outstanding.size >= depth) return
        if (!piece.isRequested(b) || piece.requests(b) >= this.maxRequestsPerBlock) continue
        if (outstanding.has(base + b * step)) continue
        piece.addRequest(b)
        this.dupHolders.add(peer)
        this.send(peer, piece, b, now)
      }
    }
  }

  /** A block arrived from `sender`: whoever else was asked for it is told to forget it. */
  private cancelOthers(
    sender: Peer,
    piece: PieceBuffer<Peer>,
    b: number,
    key: number,
    first: Peer | undefined,
  ): void {
    const offset = b * piece.blockSize
    const length = piece.blockLength(b)
    if (first !== undefined && first !== sender && ownDownload(first).outstanding.delete(key)) {
      first.sendCancel(piece.index, offset, length)
    }
    for (const p of this.dupHolders) {
      if (p !== sender && p !== first && ownDownload(p).outstanding.delete(key))
        p.sendCancel(piece.index, offset, length)
    }
  }

  /**
   * Where the peer's next requests go: its own pieces first, then pieces nobody owns any more
   * (finishing started pieces frees their buffers sooner), then a new piece (rarest first), and
   * only at the very end blocks of other peers' pieces. A snubbed peer only gets new pieces.
   * A peer only takes blocks of pieces whose block size it can request.
   */
  private nextPieceFor(peer: Peer, snubbed: boolean): PieceBuffer<Peer> | undefined {
    const d = peer.down
    for (const piece of d.owned) if (piece.hasFreeBlock()) return piece
    const bits = d.bits!
    let shared: PieceBuffer<Peer> | undefined
    if (!snubbed) {
      for (const piece of this.active.values()) {
        if (!bits.has(piece.index) || piece.blockSize > peer.blockSize || !piece.hasFreeBlock()) continue
        if (piece.owner === undefined) {
          this.adopt(peer, piece)
          return piece
        }
        shared ??= piece
      }
    }
    // Bound the memory of pieces in flight (16 MiB pieces x 50 peers would be 800 MiB): past
    // the budget, peers help finish started pieces instead of opening new ones.
    if (this.activeBytes + this.meta.pieceLength > this.maxActiveBytes && this.active.size > 0) return shared
    // No scan of the piece table when it cannot find anything: every missing piece is in
    // flight (endgame), or the peer has none we lack (refills ask every peer on each event).
    if (this.picker.startable === 0 || d.interesting === 0) return shared
    const index = this.picker.pick(bits)
    if (index >= 0) {
      const size = this.meta.pieceSize(index)
      const reuse = size === this.meta.pieceLength ? this.spare.pop() : undefined
      const piece = new PieceBuffer<Peer>(index, size, peer.blockSize, reuse, this.payload)
      this.picker.setBusy(index, true)
      this.active.set(index, piece)
      this.activeBytes += piece.size
      this.adopt(peer, piece)
      return piece
    }
    return shared
  }

  private adopt(peer: Peer, piece: PieceBuffer<Peer>): void {
    piece.owner = peer
    ownDownload(peer).owned.push(piece)
  }

  /** Unassigns the piece from its owner (if any), so any peer may continue it. */
  private disown(piece: PieceBuffer<Peer>): void {
    const owner = piece.owner
    if (owner === undefined) return
    piece.owner = undefined
    const owned = ownDownload(owner).owned
    const i = owned.indexOf(piece)
    if (i >= 0) owned.splice(i, 1)
  }
}
