/**
 * The download side of one torrent: what each peer has (piece availability, and whether we are
 * interested in it), the request/receive path through the Scheduler, SHA-1 verification,
 * writing verified pieces, and exact per-class accounting. It mirrors Uploader; Torrent keeps
 * the lifecycle and the connections and forwards each peer's download-side messages here.
 *
 * Owns, per peer, the PeerDownload record (peer-download.ts, `peer.down`), created in attach():
 * the Downloader writes bits, interesting, peerChoking and strikes, its Scheduler the request
 * state. Availability is the PiecePicker's: every change to a peer's bits is reported to it.
 */
import type { MetaInfo } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { EngineContext, EngineMetrics } from '../engine/context.js'
import type { PeerSet } from '../engine/peer-set.js'
import { type BadPiece, DEFAULTS, type DownloadStats, type TorrentStorage } from '../types.js'
import { Bitfield } from '../wire/bitfield.js'
import type { Peer } from '../wire/peer.js'
import { type Verdict, verifyPiece } from './hasher.js'
import { ownDownload, PeerDownload } from './peer-download.js'
import { type PieceBuffer, PiecePicker } from './picker.js'
import { Scheduler } from './scheduler.js'
import { ZoneBytes } from './zone-bytes.js'

/** What the download side shares with, and reports to, the torrent that owns it. */
export interface DownloadHost {
  readonly meta: MetaInfo
  readonly infoHashHex: string
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
  /** Told after a peer was banned for a bad piece (the agent reports origins' bad copies). */
  readonly onBadPiece: ((bad: BadPiece) => void) | undefined
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
  /** Bytes received from peers that have closed, by zone; live peers are added when read. */
  private readonly zones = new ZoneBytes()
  /** Bans an origin earned for bad pieces in this torrent, by address: each doubles the next. */
  private originBans: Map<string, number> | undefined

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
    const o = host.ctx.options
    this.scheduler = new Scheduler(meta, this.picker, {
      pipeline: {
        minDepth: DEFAULTS.pipelineMinDepth,
        maxDepth: o.pipelineDepth,
        maxBytes: DEFAULTS.pipelineMaxBytes,
        initialBytes: DEFAULTS.pipelineInitialBytes,
        queueMs: o.pipelineQueueMs,
      },
    })
    const now = Date.now()
    const peerSet = this.peers
    const zones = this.zones
    const ownZone = host.ctx.zone
    this.stats = {
      get peers() {
        return peerSet.byId.size
      },
      get bytesByZone() {
        return zones.byZone(peerSet.values())
      },
      get bytesCrossZone() {
        return ownZone === undefined ? 0 : zones.crossZone(peerSet.values(), ownZone)
      },
      bytesReceived: 0,
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

  /** The torrent took the connection: the peer's download record, with nothing had yet. */
  attach(peer: Peer): void {
    peer.down = new PeerDownload(new Bitfield(this.meta.pieceCount))
  }

  /** A peer went away: its pieces no longer count as available, its requests go to others. */
  onPeerClosed(peer: Peer): void {
    this.zones.closed(peer)
    const d = ownDownload(peer)
    if (d.bits !== undefined) this.picker.peerLost(d.bits)
    d.bits = undefined
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
    if (!peer.down.bits?.empty) this.setPeerBits(peer, new Bitfield(this.meta.pieceCount))
  }

  onHave(peer: Peer, index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.meta.pieceCount) {
      peer.close('have out of range')
      return
    }
    const d = ownDownload(peer)
    if (!d.bits!.set(index)) return
    this.picker.peerHasPiece(index)
    if (!this.picker.have.has(index)) d.interesting++
    this.afterPeerGained(peer)
  }

  /**
   * BEP 3 makes the bitfield the first message only, but aria2 sends its bitfield again in the
   * middle of a connection: a later one replaces what we knew (availability follows), rather
   * than closing a connection that is working.
   */
  private setPeerBits(peer: Peer, bits: Bitfield): void {
    const d = ownDownload(peer)
    const old = d.bits
    if (old !== undefined && !old.empty) this.picker.peerLost(old)
    d.bits = bits
    this.picker.peerHas(bits)
    d.interesting = bits.countNotIn(this.picker.have)
    this.afterPeerGained(peer)
  }

  private afterPeerGained(peer: Peer): void {
    if (this.complete && peer.down.bits!.complete) {
      peer.close('both seeding')
      return
    }
    this.updateInterest(peer)
    this.scheduler.fill(peer, this.host.ctx.clock.now())
  }

  private updateInterest(peer: Peer): void {
    const want = peer.down.interesting > 0 && this.host.downloading
    if (want) peer.interested()
    else peer.uninterested()
  }

  // ----- requests and blocks -----

  onChoke(peer: Peer): void {
    ownDownload(peer).peerChoking = true
    // Without BEP 6 a choke drops our pending requests; with it the peer rejects them one by one.
    if (!peer.fast) {
      this.scheduler.releaseAll(peer, false)
      this.fillAll()
    }
  }

  onUnchoke(peer: Peer): void {
    ownDownload(peer).peerChoking = false
    this.scheduler.fill(peer, this.host.ctx.clock.now())
  }

  onReject(peer: Peer, index: number, offset: number, _length: number): void {
    if (index < 0 || index >= this.meta.pieceCount) {
      peer.close('reject out of range')
      return
    }
    if (!this.scheduler.onReject(peer, index, offset)) return
    const d = ownDownload(peer)
    if (!d.peerChoking && d.bits!.clear(index)) {
      // Rejected while unchoked: the peer will not serve this piece; stop asking it for it.
      this.picker.peerLostPiece(index)
      if (!this.picker.have.has(index)) d.interesting--
      this.updateInterest(peer)
    }
    this.fillAll()
  }

  onPiece(peer: Peer, index: number, offset: number, block: Buffer): void {
    const now = this.host.ctx.clock.now()
    const r = this.scheduler.onBlock(peer, index, offset, block, now)
    if (r.kind === 'invalid') {
      peer.close(r.why)
      return
    }
    // Not requested from this peer: dropped, so it can never taint (and get banned) the peers
    // actually supplying that piece. It freed no request, so there is nothing to top up.
    if (r.kind === 'unrequested') return
    if (r.kind === 'accepted') {
      this.metrics.receivedFrom[peer.cls].inc(block.length)
      this.stats.bytesReceived += block.length
      if (r.piece !== undefined) this.finishPiece(r.piece)
    }
    this.scheduler.refill(peer, now)
  }

  /** Tops up every peer's requests (after blocks were freed or a peer went away). */
  fillAll(): void {
    if (!this.host.downloading) return
    this.scheduler.fillAll(this.peers.values(), this.host.ctx.clock.now())
  }

  /**
   * Re-issues requests that waited longer than requestTimeoutMs (from the torrent's tick). A
   * peer that stalls again and again (accepts requests, never answers) is banned, for less
   * long than one that sends corrupt data: it would otherwise keep taking a share of every
   * new batch.
   */
  expire(now: number): void {
    if (!this.host.downloading) return
    const o = this.host.ctx.options
    for (const peer of this.scheduler.expire(this.peers.values(), now, o.requestTimeoutMs)) {
      this.metrics.stalls.inc()
      // An origin that stalls is overloaded rather than hostile, and may be the only source:
      // it stays, snubbed (one request at a time). Others stay away for a while.
      if (peer.down.stalls >= o.stallStrikes && peer.cls !== 'origin') {
        this.host.ctx.ban(this.host.infoHashHex, peer, 'stalled', DEFAULTS.stallBanMs)
        peer.close('stalled')
      }
    }
    // Also tops up peers whose snub ended: nothing else would (no block is coming from them).
    this.fillAll()
  }

  /** Whether every missing piece is in flight (duplicate requests allowed). */
  get endgame(): boolean {
    return this.scheduler.endgame
  }

  // ----- verified pieces -----

  /** A complete piece: SHA-1 (inline, or on the hash worker: hasher.ts), then storage. */
  private finishPiece(piece: PieceBuffer<Peer>): void {
    const onWorker = this.host.ctx.options.hashOnWorker
    verifyPiece(piece.data, this.meta.pieceHash(piece.index), onWorker, (data, verdict) => {
      piece.data = data
      this.onVerified(piece, verdict)
    })
  }

  private onVerified(piece: PieceBuffer<Peer>, verdict: Verdict): void {
    if (this.host.removed) return
    const i = piece.index
    if (verdict === 'ok') {
      void this.store(piece)
      return
    }
    this.scheduler.settle(piece, false)
    this.scheduler.reset(i)
    if (verdict === 'bad') {
      this.metrics.badPieces.inc()
      const sources = piece.sources.map((p) => p.addr)
      this.host.log.warn({ piece: i, sources }, 'piece failed SHA-1 verification; discarding')
      // A sole source is certainly guilty; among several, ban on the second strike.
      for (const src of piece.sources) {
        const strikes = ++ownDownload(src).strikes
        if (piece.sources.length === 1 || strikes >= 2) this.banCorrupt(src, i)
      }
    } else {
      this.host.log.warn({ piece: i }, 'hash worker failed; fetching the piece again')
    }
    this.fillAll()
  }

  /**
   * Bans a peer that sent a bad piece from this torrent. An origin is the blob's source and
   * can repair its copy once told, so it is banned briefly and dialled again (originBanMs,
   * doubling per further bad piece up to banMs: a peer merely calling itself an origin soon
   * stays away as long as any other); anyone else for banMs. Then the host hears of it.
   */
  private banCorrupt(src: Peer, piece: number): void {
    const o = this.host.ctx.options
    let ms = o.banMs
    const where = src.direction === 'out' ? src.addr : `${src.ip}:${src.listenPort}`
    if (src.cls === 'origin') {
      this.originBans ??= new Map()
      const n = this.originBans.get(where) ?? 0
      this.originBans.set(where, n + 1)
      ms = Math.min(o.banMs, o.originBanMs * 2 ** Math.min(n, 20))
    }
    this.host.ctx.ban(this.host.infoHashHex, src, 'corrupt piece', ms)
    src.close('sent a corrupt piece')
    const listener = this.host.onBadPiece
    if (listener === undefined) return
    try {
      listener({ piece, peer: where, peerIdHex: src.idHex, cls: src.cls, banMs: ms })
    } catch (err) {
      this.host.log.warn({ err }, 'bad-piece listener failed')
    }
  }

  private async store(piece: PieceBuffer<Peer>): Promise<void> {
    const i = piece.index
    try {
      await this.host.storage.writePiece(i, piece.data)
    } catch (err) {
      if (this.host.removed) return
      this.host.log.error({ err, piece: i }, 'cannot write piece; failing the download')
      this.scheduler.settle(piece, false)
      this.picker.setBusy(i, false)
      this.host.onStorageFailed(
        new ShoalError('IO_ERROR', `cannot write piece ${i}: ${(err as Error).message}`, { cause: err }),
      )
      return
    }
    if (this.host.removed) return
    // Written: storage keeps no reference to the buffer once writePiece resolved.
    this.scheduler.settle(piece, true)
    if (!this.picker.markHave(i)) return
    const size = piece.size
    this.haveBytes += size
    this.downloaded += size
    this.stats.bytesFromOrigins += piece.originBytes
    this.stats.bytesFromAgents += piece.agentBytes
    if (piece.majorityClass === 'origin') this.stats.piecesFromOrigins++
    else this.stats.piecesFromAgents++
    this.metrics.verified.inc()
    for (const peer of this.peers.values()) {
      const d = ownDownload(peer)
      // A seed does not need to hear what we have (and is closed when we finish).
      if (!d.bits?.complete) peer.sendHave(i)
      if (d.bits?.has(i) && --d.interesting === 0) this.updateInterest(peer)
    }
    if (this.picker.complete) this.finish()
  }

  private finish(): void {
    const s = this.stats
    s.finishedAt = Date.now()
    // A seeding torrent needs no piece buffers (up to maxActiveBytes kept for reuse).
    this.scheduler.dropSpares()
    const seconds = Math.max(0.001, (s.finishedAt - s.startedAt) / 1000)
    this.host.log.info(
      { ...s, seconds, megabytesPerSecond: Math.round((this.downloaded / seconds / 1e6) * 10) / 10 },
      'download finished',
    )
    // The torrent is seeding from here on, so the loop below drops our interest everywhere.
    this.host.onDownloaded()
    for (const peer of [...this.peers.values()]) {
      if (peer.down.bits?.complete) peer.close('both seeding')
      else this.updateInterest(peer)
    }
  }
}
