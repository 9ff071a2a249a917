/**
 * The download side of one torrent: what each peer has (piece availability, and whether we are
 * interested in it), the request/receive path through the Scheduler, SHA-1 verification,
 * writing verified pieces, and exact per-class accounting. It mirrors Uploader; Torrent keeps
 * the lifecycle and the connections and forwards each peer's download-side messages here.
 */
import type { MetaInfo } from '../core/index.js'
import { ShoalError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import { Bitfield } from './bitfield.js'
import type { EngineContext, EngineMetrics } from './context.js'
import type { Peer } from './peer.js'
import type { PeerSet } from './peer-set.js'
import { type PieceBuffer, PiecePicker } from './picker.js'
import { Scheduler } from './scheduler.js'
import { DEFAULTS, type DownloadStats, type TorrentStorage } from './types.js'

/** What the download side shares with, and reports to, the torrent that owns it. */
export interface DownloadHost {
  readonly meta: MetaInfo
  readonly storage: TorrentStorage
  readonly ctx: EngineContext
  readonly log: Logger
  readonly peers: PeerSet
  /** Requests and interest only while downloading: not while seeding, not after removal. */
  readonly downloading: boolean
  readonly removed: boolean
  /** The last piece was verified and written; called before peers are told we lost interest. */
  onDownloaded(): void
  /** A verified piece could not be written: the download cannot go on. */
  onStorageFailed(err: ShoalError): void
}

export class Downloader {
  /** Pieces credited as they are verified and written (bytesUploaded is the Uploader's). */
  readonly stats: DownloadStats
  /** Bytes verified and written by this engine (the tracker's "downloaded"). */
  downloaded = 0
  private haveBytes = 0
  private readonly host: DownloadHost
  private readonly meta: MetaInfo
  private readonly peers: PeerSet
  private readonly metrics: EngineMetrics
  private readonly picker: PiecePicker
  private readonly scheduler: Scheduler

  constructor(host: DownloadHost) {
    this.host = host
    this.meta = host.meta
    this.peers = host.peers
    this.metrics = host.ctx.metrics
    const meta = host.meta
    this.picker = new PiecePicker(meta.pieceCount, {
      has: (i) => host.storage.hasPiece(i),
      randomFirst: DEFAULTS.randomFirstPieces,
    })
    for (let i = 0; i < meta.pieceCount; i++) if (this.picker.have.has(i)) this.haveBytes += meta.pieceSize(i)
    this.scheduler = new Scheduler(meta, this.picker, host.ctx.options.pipelineDepth)
    const now = Date.now()
    this.stats = {
      bytesFromOrigins: 0,
      bytesFromAgents: 0,
      bytesUploaded: 0,
      piecesFromOrigins: 0,
      piecesFromAgents: 0,
      startedAt: now,
    }
    // A torrent that starts complete is a seed: it finished the moment it started.
    if (this.picker.complete) this.stats.finishedAt = now
  }

  /** Pieces verified and written (what we tell peers we have, and what we serve). */
  get have(): Bitfield {
    return this.picker.have
  }

  get complete(): boolean {
    return this.picker.complete
  }

  /** Bytes still missing (the tracker's "left"). */
  get left(): number {
    return this.meta.length - this.haveBytes
  }

  /** A peer went away: its pieces no longer count as available, its requests go to others. */
  onPeerClosed(peer: Peer): void {
    if (peer.bits !== undefined) this.picker.removeBitfield(peer.bits)
    peer.bits = undefined
    this.scheduler.releaseAll(peer, false)
  }

  // ----- what the peer has -----

  onBitfield(peer: Peer, data: Uint8Array): void {
    const bits = Bitfield.fromWire(this.meta.pieceCount, data)
    if (bits === undefined) {
      peer.close('malformed bitfield')
      return
    }
    this.setPeerBits(peer, bits)
  }

  onHaveAll(peer: Peer): void {
    this.setPeerBits(peer, Bitfield.full(this.meta.pieceCount))
  }

  onHaveNone(peer: Peer): void {
    if (!peer.bits?.empty) peer.close('have-none after pieces')
  }

  onHave(peer: Peer, index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.meta.pieceCount) {
      peer.close('have out of range')
      return
    }
    if (!peer.bits!.set(index)) return
    this.picker.addHave(index)
    if (!this.picker.have.has(index)) peer.interesting++
    this.afterPeerGained(peer)
  }

  private setPeerBits(peer: Peer, bits: Bitfield): void {
    // BEP 3: the bitfield is only the first message; a second one would corrupt availability.
    if (!peer.bits?.empty) {
      peer.close('bitfield after pieces')
      return
    }
    peer.bits = bits
    this.picker.addBitfield(bits)
    peer.interesting = bits.countNotIn(this.picker.have)
    this.afterPeerGained(peer)
  }

  private afterPeerGained(peer: Peer): void {
    if (this.complete && peer.bits!.complete) {
      peer.close('both seeding')
      return
    }
    this.updateInterest(peer)
    this.scheduler.fill(peer, Date.now())
  }

  private updateInterest(peer: Peer): void {
    const want = peer.interesting > 0 && this.host.downloading
    if (want && !peer.wire.amInterested) peer.wire.interested()
    else if (!want && peer.wire.amInterested) peer.wire.uninterested()
  }

  // ----- requests and blocks -----

  onChoke(peer: Peer): void {
    // Without BEP 6 a choke drops our pending requests; with it the peer rejects them one by one.
    if (!peer.wire.hasFast) {
      this.scheduler.releaseAll(peer, false)
      this.fillAll()
    }
  }

  onUnchoke(peer: Peer): void {
    this.scheduler.fill(peer, Date.now())
  }

  onReject(peer: Peer, index: number, offset: number, _length: number): void {
    if (index < 0 || index >= this.meta.pieceCount) {
      peer.close('reject out of range')
      return
    }
    this.scheduler.onReject(peer, index, offset)
    if (!peer.wire.peerChoking && peer.bits!.clear(index)) {
      // Rejected while unchoked: the peer will not serve this piece; stop asking it for it.
      this.picker.availability[index]!--
      if (!this.picker.have.has(index)) peer.interesting--
      this.updateInterest(peer)
    }
    this.fillAll()
  }

  onPiece(peer: Peer, index: number, offset: number, block: Uint8Array): void {
    const now = Date.now()
    const r = this.scheduler.onBlock(peer, index, offset, block)
    if (r.kind === 'invalid') {
      peer.close(r.why)
      return
    }
    // Not requested from this peer: dropped, so it can never taint (and get banned) the peers
    // actually supplying that piece. It freed no request, so there is nothing to top up.
    if (r.kind === 'unrequested') return
    if (r.kind === 'accepted') {
      this.metrics.received.inc({ source: peer.cls }, block.length)
      if (r.piece !== undefined) this.finishPiece(r.piece)
    }
    this.scheduler.fill(peer, now)
  }

  /** Tops up every peer's requests (after blocks were freed or a peer went away). */
  fillAll(): void {
    if (!this.host.downloading) return
    this.scheduler.fillAll(this.peers.values(), Date.now())
  }

  /** Re-issues requests that waited longer than requestTimeoutMs (from the torrent's tick). */
  expire(now: number): void {
    if (!this.host.downloading) return
    if (this.scheduler.expire(this.peers.values(), now, this.host.ctx.options.requestTimeoutMs))
      this.fillAll()
  }

  // ----- verified pieces -----

  private finishPiece(piece: PieceBuffer<Peer>): void {
    const i = piece.index
    if (!piece.verify(this.meta.pieceHash(i))) {
      this.metrics.badPieces.inc()
      const sources = piece.sources.map((p) => p.addr)
      this.host.log.warn({ piece: i, sources }, 'piece failed SHA-1 verification; discarding')
      // A sole source is certainly guilty; among several, ban on the second strike.
      for (const src of piece.sources) {
        src.strikes++
        if (piece.sources.length === 1 || src.strikes >= 2) {
          this.host.ctx.ban(src)
          src.close('sent a corrupt piece')
        }
      }
      this.scheduler.reset(i)
      this.fillAll()
      return
    }
    void this.store(piece)
  }

  private async store(piece: PieceBuffer<Peer>): Promise<void> {
    const i = piece.index
    try {
      await this.host.storage.writePiece(i, piece.data)
    } catch (err) {
      if (this.host.removed) return
      this.host.log.error({ err, piece: i }, 'cannot write piece; failing the download')
      this.picker.setBusy(i, false)
      this.host.onStorageFailed(
        new ShoalError('IO_ERROR', `cannot write piece ${i}: ${(err as Error).message}`, { cause: err }),
      )
      return
    }
    if (this.host.removed || !this.picker.markHave(i)) return
    const size = piece.size
    this.haveBytes += size
    this.downloaded += size
    this.stats.bytesFromOrigins += piece.originBytes
    this.stats.bytesFromAgents += piece.agentBytes
    if (piece.majorityClass === 'origin') this.stats.piecesFromOrigins++
    else this.stats.piecesFromAgents++
    this.metrics.verified.inc()
    for (const peer of this.peers.values()) {
      peer.wire.have(i)
      if (peer.bits?.has(i)) {
        peer.interesting--
        if (peer.interesting === 0) this.updateInterest(peer)
      }
    }
    if (this.picker.complete) this.finish()
  }

  private finish(): void {
    const s = this.stats
    s.finishedAt = Date.now()
    const seconds = Math.max(0.001, (s.finishedAt - s.startedAt) / 1000)
    this.host.log.info(
      { ...s, seconds, megabytesPerSecond: Math.round((this.downloaded / seconds / 1e6) * 10) / 10 },
      'download finished',
    )
    // The torrent is seeding from here on, so the loop below drops our interest everywhere.
    this.host.onDownloaded()
    for (const peer of [...this.peers.values()]) {
      if (peer.bits?.complete) peer.close('both seeding')
      else this.updateInterest(peer)
    }
  }
}
