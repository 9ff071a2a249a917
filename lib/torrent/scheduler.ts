/**
 * Request scheduling for one torrent: which blocks to ask which peer for, and where arriving
 * blocks go. Pieces have an owner so a piece normally comes from a single peer (a SHA-1
 * failure then names the culprit); blocks freed by choke, reject, timeout or disconnect are
 * re-issued to whoever can serve them, so one slow peer never stalls the download.
 */
import type { MetaInfo } from '../core/index.js'
import type { Peer } from './peer.js'
import { PieceBuffer, type PiecePicker } from './picker.js'
import { BLOCK_SIZE, DEFAULTS } from './types.js'

/** Wire wants a callback per request; one shared no-op avoids a closure per request. Blocks
 *  are handled from the 'piece' event, failures from 'choke'/'reject' and our own timeouts. */
const NOOP = (): void => {}

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

export class Scheduler {
  readonly picker: PiecePicker
  private readonly meta: MetaInfo
  private readonly blocksPerPiece: number
  private readonly pipelineDepth: number
  /** Pieces being downloaded, by index. */
  readonly active = new Map<number, PieceBuffer<Peer>>()
  private activeBytes = 0
  private readonly maxActiveBytes: number

  constructor(
    meta: MetaInfo,
    picker: PiecePicker,
    pipelineDepth: number,
    maxActiveBytes: number = DEFAULTS.maxActiveBytes,
  ) {
    this.meta = meta
    this.picker = picker
    this.pipelineDepth = pipelineDepth
    this.maxActiveBytes = maxActiveBytes
    this.blocksPerPiece = Math.ceil(meta.pieceLength / BLOCK_SIZE)
  }

  /** Tops up every peer's pipeline, responsive peers first so they get released blocks. */
  fillAll(peers: Iterable<Peer>, now: number): void {
    const snubbed: Peer[] = []
    for (const peer of peers) {
      if (now < peer.snubbedUntil) snubbed.push(peer)
      else this.fill(peer, now)
    }
    for (const peer of snubbed) this.fill(peer, now)
  }

  /** Tops up the peer's request pipeline. */
  fill(peer: Peer, now: number): void {
    const w = peer.wire
    if (peer.closed || w.peerChoking || !w.amInterested || peer.bits === undefined) return
    const snubbed = now < peer.snubbedUntil
    const depth = snubbed ? 1 : this.pipelineDepth
    while (peer.outstanding.size < depth) {
      const piece = this.nextPieceFor(peer, snubbed)
      if (piece === undefined) return
      let b = piece.nextFreeBlock()
      while (b >= 0 && peer.outstanding.size < depth) {
        this.request(peer, piece, b, now)
        b = piece.nextFreeBlock()
      }
    }
  }

  /**
   * A block arrived. Only blocks we asked *this* peer for are used: bittorrent-protocol passes
   * unrequested 'piece' messages through, and a block sprayed into a piece someone else is
   * supplying would make that peer share the blame (and the ban) when the piece fails SHA-1.
   * Such blocks are dropped without a word (BEP 6 allows a peer to answer a cancel with the
   * block, so an unknown block is not proof of hostility). A late block, requested from this
   * peer before a timeout or choke withdrew the request, is still used if the piece needs it;
   * duplicates are dropped. A block at a misaligned offset, past the piece's end or of the
   * wrong size is a protocol violation: we only ever request aligned 16 KiB blocks.
   */
  onBlock(peer: Peer, index: number, offset: number, data: Uint8Array): BlockResult {
    if (index < 0 || index >= this.meta.pieceCount || offset < 0 || offset % BLOCK_SIZE !== 0) {
      return { kind: 'invalid', why: `unexpected block ${index}:${offset}` }
    }
    const size = this.meta.pieceSize(index)
    if (offset >= size || data.length !== Math.min(BLOCK_SIZE, size - offset)) {
      return { kind: 'invalid', why: `block ${index}:${offset} has ${data.length} bytes` }
    }
    const b = offset / BLOCK_SIZE
    const key = index * this.blocksPerPiece + b
    if (!peer.outstanding.delete(key) && !peer.withdrawn.delete(key)) return UNREQUESTED
    const piece = this.active.get(index)
    // Not wanted: a duplicate, or a block of a piece that completed or was reset meanwhile.
    if (piece === undefined || !piece.wants(b)) return IGNORED
    piece.accept(b, data, peer, peer.cls)
    if (!piece.complete) return ACCEPTED
    this.detach(piece)
    return { kind: 'accepted', piece }
  }

  /** Forgets a finished (or failed) piece; the picker keeps it busy until the caller decides. */
  detach(piece: PieceBuffer<Peer>): void {
    if (this.active.get(piece.index) !== piece) return
    this.active.delete(piece.index)
    this.activeBytes -= piece.size
    this.disown(piece)
  }

  /** The peer refused a block: it will not serve that piece, so stop counting on it for it. */
  onReject(peer: Peer, index: number, offset: number): void {
    const b = offset / BLOCK_SIZE
    const key = index * this.blocksPerPiece + b
    // A reject of a withdrawn request (BEP 6 answers a cancel so): it will not come late.
    if (!peer.outstanding.delete(key)) {
      peer.withdrawn.delete(key)
      return
    }
    const piece = this.active.get(index)
    if (piece === undefined) return
    piece.release(b, peer)
    if (piece.owner === peer) this.disown(piece)
  }

  /**
   * Frees everything the peer was fetching; with `cancel`, tells the peer too (timeouts).
   * The freed requests become the peer's `withdrawn` set, so a block it still sends for one of
   * them is accepted as late rather than dropped as unrequested. Only the latest batch is kept
   * (the set is replaced, not grown), which bounds it by the pipeline depth.
   */
  releaseAll(peer: Peer, cancel: boolean): void {
    const bpp = this.blocksPerPiece
    const withdrawn = peer.withdrawn
    withdrawn.clear()
    for (const key of peer.outstanding.keys()) {
      if (!peer.closed) withdrawn.add(key)
      const index = Math.floor(key / bpp)
      const b = key - index * bpp
      const piece = this.active.get(index)
      if (piece === undefined) continue
      if (piece.release(b, peer) && cancel && !peer.closed) {
        peer.wire.cancel(index, b * BLOCK_SIZE, piece.blockLength(b))
      }
    }
    peer.outstanding.clear()
    for (const piece of peer.owned) piece.owner = undefined
    peer.owned.length = 0
  }

  /**
   * Peers whose oldest request is older than `timeoutMs` (the Map keeps insertion order, so
   * that is its first entry): release, cancel and snub them, so others fetch those blocks.
   */
  expire(peers: Iterable<Peer>, now: number, timeoutMs: number): boolean {
    let freed = false
    for (const peer of peers) {
      const oldest = peer.outstanding.values().next()
      if (oldest.done || now - oldest.value < timeoutMs) continue
      peer.log.debug(
        { peer: peer.addr, outstanding: peer.outstanding.size },
        'requests timed out; re-issuing',
      )
      this.releaseAll(peer, true)
      peer.snubbedUntil = now + timeoutMs
      freed = true
    }
    return freed
  }

  /** Drops a piece that failed verification so it can be fetched again. */
  reset(index: number): void {
    const piece = this.active.get(index)
    if (piece !== undefined) this.detach(piece)
    this.picker.setBusy(index, false)
  }

  private request(peer: Peer, piece: PieceBuffer<Peer>, b: number, now: number): void {
    piece.markRequested(b, peer)
    peer.outstanding.set(piece.index * this.blocksPerPiece + b, now)
    peer.wire.request(piece.index, b * BLOCK_SIZE, piece.blockLength(b), NOOP)
  }

  /**
   * Where the peer's next requests go: its own pieces first, then pieces nobody owns any more
   * (finishing started pieces frees their buffers sooner), then a new piece (rarest first), and
   * only at the very end blocks of other peers' pieces. A snubbed peer only gets new pieces.
   */
  private nextPieceFor(peer: Peer, snubbed: boolean): PieceBuffer<Peer> | undefined {
    for (const piece of peer.owned) if (piece.hasFreeBlock()) return piece
    const bits = peer.bits!
    let shared: PieceBuffer<Peer> | undefined
    if (!snubbed) {
      for (const piece of this.active.values()) {
        if (!bits.has(piece.index) || !piece.hasFreeBlock()) continue
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
    const index = this.picker.pick(bits)
    if (index >= 0) {
      const piece = new PieceBuffer<Peer>(index, this.meta.pieceSize(index))
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
    peer.owned.push(piece)
  }

  /** Unassigns the piece from its owner (if any), so any peer may continue it. */
  private disown(piece: PieceBuffer<Peer>): void {
    const owner = piece.owner
    if (owner === undefined) return
    piece.owner = undefined
    const i = owner.owned.indexOf(piece)
    if (i >= 0) owner.owned.splice(i, 1)
  }
}
