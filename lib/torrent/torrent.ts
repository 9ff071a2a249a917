/**
 * One torrent in the engine: lifecycle, what each peer has (availability and interest),
 * piece verification and storage, exact per-class download accounting and the announce loop.
 * Request scheduling lives in Scheduler, choking and serving in Uploader, connection
 * bookkeeping in PeerSet, sockets and framing in Peer.
 */
import type { MetaInfo } from '../core/index.js'
import { ShoalError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import { Announcer } from './announcer.js'
import { Bitfield } from './bitfield.js'
import type { EngineContext } from './context.js'
import type { Peer, PeerOwner, Respond } from './peer.js'
import { PeerSet } from './peer-set.js'
import { type PieceBuffer, PiecePicker } from './picker.js'
import { Scheduler } from './scheduler.js'
import { type AnnouncePeer, DEFAULTS, type DownloadStats, type TorrentStorage } from './types.js'
import { Uploader } from './uploader.js'
import { Waiters } from './waiters.js'

export type TorrentState = 'seeding' | 'downloading' | 'removed'

export class Torrent implements PeerOwner {
  readonly meta: MetaInfo
  readonly storage: TorrentStorage
  readonly infoHashHex: string
  readonly infoHashBuf: Buffer
  readonly picker: PiecePicker
  readonly peers: PeerSet
  private readonly ctx: EngineContext
  private readonly log: Logger
  private readonly scheduler: Scheduler
  private readonly announcer: Announcer
  private readonly uploader: Uploader
  private readonly waiters = new Waiters<DownloadStats>()
  private readonly stats: DownloadStats
  private state: TorrentState
  private haveBytes = 0
  private downloaded = 0
  private tickTimer: NodeJS.Timeout | undefined

  constructor(meta: MetaInfo, storage: TorrentStorage, ctx: EngineContext) {
    if (storage.pieceCount !== meta.pieceCount) {
      throw new ShoalError(
        'TORRENT_ERROR',
        `storage has ${storage.pieceCount} pieces; the torrent has ${meta.pieceCount}`,
      )
    }
    this.meta = meta
    this.storage = storage
    this.ctx = ctx
    this.infoHashHex = meta.infoHash.hex
    this.infoHashBuf = meta.infoHash.toBuffer()
    this.log = ctx.logger.child({ infoHash: this.infoHashHex })
    this.peers = new PeerSet(ctx)
    this.picker = new PiecePicker(meta.pieceCount, {
      has: (i) => storage.hasPiece(i),
      randomFirst: DEFAULTS.randomFirstPieces,
    })
    for (let i = 0; i < meta.pieceCount; i++) if (this.picker.have.has(i)) this.haveBytes += meta.pieceSize(i)
    this.scheduler = new Scheduler(meta, this.picker, ctx.options.pipelineDepth)
    this.uploader = new Uploader({
      meta,
      storage,
      have: this.picker.have,
      slots: ctx.options.uploadSlots,
      metrics: ctx.metrics,
      log: this.log,
    })
    this.state = this.picker.complete ? 'seeding' : 'downloading'
    const now = Date.now()
    this.stats = {
      bytesFromOrigins: 0,
      bytesFromAgents: 0,
      bytesUploaded: 0,
      piecesFromOrigins: 0,
      piecesFromAgents: 0,
      startedAt: now,
    }
    if (this.state === 'seeding') this.stats.finishedAt = now
    this.announcer = new Announcer(this, {
      source: ctx.peerSource,
      peerId: ctx.peerId,
      port: () => ctx.port,
      numwant: ctx.options.maxConnectionsPerTorrent,
      logger: this.log,
    })
    this.tickTimer = setInterval(this.tick, DEFAULTS.tickMs)
    this.tickTimer.unref()
  }

  get infoHash() {
    return this.meta.infoHash
  }

  get complete(): boolean {
    return this.picker.complete
  }

  get removed(): boolean {
    return this.state === 'removed'
  }

  /** Seeding needs nothing but the announce; downloading also logs its start. */
  start(): void {
    if (this.state === 'downloading') {
      this.log.info(
        {
          pieces: this.meta.pieceCount,
          missing: this.meta.pieceCount - this.picker.have.count,
          length: this.meta.length,
        },
        'download started',
      )
    } else if (this.complete) {
      this.log.debug({ pieces: this.meta.pieceCount, length: this.meta.length }, 'seeding')
    } else {
      this.log.warn(
        { missing: this.meta.pieceCount - this.picker.have.count },
        'seeding an incomplete torrent',
      )
    }
    this.announcer.start()
  }

  /** Resolves with the stats when every piece is verified and written. */
  wait(signal?: AbortSignal): Promise<DownloadStats> {
    if (this.state === 'removed') return Promise.reject(new ShoalError('ABORTED', 'torrent was removed'))
    if (this.complete) return Promise.resolve(this.snapshot())
    if (this.state !== 'downloading') {
      this.state = 'downloading'
      this.announcer.refresh()
    }
    return this.waiters.add(signal, this.onAllWaitersGone)
  }

  snapshot(): DownloadStats {
    return { ...this.stats, bytesUploaded: this.uploader.bytesUploaded }
  }

  /** Closes everything; resolves when the 'stopped' announce went out (or gave up). */
  destroy(reason: string): Promise<void> {
    if (this.state === 'removed') return Promise.resolve()
    this.state = 'removed'
    if (this.tickTimer) clearInterval(this.tickTimer)
    this.tickTimer = undefined
    for (const peer of this.peers.all()) peer.close(reason)
    this.waiters.rejectAll(new ShoalError('ABORTED', `torrent ${reason}`))
    return this.announcer.stop()
  }

  // ----- AnnounceTarget -----

  counters(): { uploaded: number; downloaded: number; left: number } {
    return {
      uploaded: this.uploader.bytesUploaded,
      downloaded: this.downloaded,
      left: this.meta.length - this.haveBytes,
    }
  }

  hungry(): boolean {
    return this.state === 'downloading' && this.peers.size < DEFAULTS.hungryPeerCount
  }

  onPeers(list: AnnouncePeer[]): void {
    // Seeds wait to be dialled: leechers know about them from the tracker.
    if (this.state !== 'downloading') return
    for (const p of this.peers.toDial(list)) this.peers.addDial(this.ctx.dial(this, p.ip, p.port))
  }

  // ----- connections -----

  /** Takes a handshaken connection; false when it must be closed (full, duplicate). */
  attach(peer: Peer): boolean {
    if (this.state === 'removed' || !this.peers.add(peer)) return false
    peer.bits = new Bitfield(this.meta.pieceCount)
    peer.log = this.log
    peer.attach(this)
    const w = peer.wire
    const have = this.picker.have
    if (have.complete && w.hasFast) w.haveAll()
    else if (have.empty) {
      if (w.hasFast) w.haveNone()
    } else w.bitfield(have.buffer)
    this.ctx.metrics.peers.inc()
    const fields = { peer: peer.addr, peerId: peer.idHex, cls: peer.cls, direction: peer.direction }
    peer.log.debug(fields, 'peer connected')
    return true
  }

  /** An outgoing connection closed (before or after its handshake). */
  onDialClosed(peer: Peer): void {
    this.peers.onDialClosed(peer)
  }

  onClose(peer: Peer): void {
    if (!this.peers.delete(peer)) return
    this.ctx.metrics.peers.dec()
    if (peer.bits !== undefined) this.picker.removeBitfield(peer.bits)
    peer.bits = undefined
    this.scheduler.releaseAll(peer, false)
    this.uploader.onClosed(peer, this.peers.values())
    if (this.state === 'downloading') this.fillAll()
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

  private setPeerBits(peer: Peer, bits: Bitfield): void {
    // BEP 3: the bitfield is only the first message; a second one would corrupt availability.
    if (!peer.bits?.empty) {
      peer.close('bitfield after pieces')
      return
    }
    peer.bits = bits
    this.picker.addBitfield(bits)
    const have = this.picker.have.buffer
    let interesting = 0
    for (let i = 0; i < have.length; i++) interesting += popcount(bits.buffer[i]! & ~have[i]!)
    peer.interesting = interesting
    this.afterPeerGained(peer)
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

  private afterPeerGained(peer: Peer): void {
    if (this.complete && peer.bits!.complete) {
      peer.close('both seeding')
      return
    }
    this.updateInterest(peer)
    this.scheduler.fill(peer, Date.now())
  }

  private updateInterest(peer: Peer): void {
    const want = peer.interesting > 0 && this.state === 'downloading'
    if (want && !peer.wire.amInterested) peer.wire.interested()
    else if (!want && peer.wire.amInterested) peer.wire.uninterested()
  }

  // ----- choking and serving: see Uploader -----

  onInterested(peer: Peer): void {
    this.uploader.onInterested(peer)
  }

  onUninterested(peer: Peer): void {
    this.uploader.onUninterested(peer, this.peers.values())
  }

  onRequest(peer: Peer, index: number, offset: number, length: number, respond: Respond): void {
    this.uploader.onRequest(peer, index, offset, length, respond)
  }

  // ----- downloading -----

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
    if (r.kind === 'accepted') {
      this.ctx.metrics.received.inc({ source: peer.cls }, block.length)
      if (r.piece !== undefined) this.finishPiece(r.piece)
    }
    this.scheduler.fill(peer, now)
  }

  private finishPiece(piece: PieceBuffer<Peer>): void {
    const i = piece.index
    if (!piece.verify(this.meta.pieceHash(i))) {
      this.ctx.metrics.badPieces.inc()
      const sources = piece.sources.map((p) => p.addr)
      this.log.warn({ piece: i, sources }, 'piece failed SHA-1 verification; discarding')
      // A sole source is certainly guilty; among several, ban on the second strike.
      for (const src of piece.sources) {
        src.strikes++
        if (piece.sources.length === 1 || src.strikes >= 2) {
          this.ctx.ban(src)
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
      await this.storage.writePiece(i, piece.data)
    } catch (err) {
      if (this.state === 'removed') return
      this.log.error({ err, piece: i }, 'cannot write piece; failing the download')
      this.picker.setBusy(i, false)
      this.waiters.rejectAll(
        new ShoalError('IO_ERROR', `cannot write piece ${i}: ${(err as Error).message}`, { cause: err }),
      )
      this.ctx.removeTorrent(this, 'storage failed')
      return
    }
    if (this.state === 'removed' || !this.picker.markHave(i)) return
    const size = piece.size
    this.haveBytes += size
    this.downloaded += size
    this.stats.bytesFromOrigins += piece.originBytes
    this.stats.bytesFromAgents += piece.agentBytes
    if (piece.majorityClass === 'origin') this.stats.piecesFromOrigins++
    else this.stats.piecesFromAgents++
    this.ctx.metrics.verified.inc()
    for (const peer of this.peers.values()) {
      peer.wire.have(i)
      if (peer.bits?.has(i)) {
        peer.interesting--
        if (peer.interesting === 0) this.updateInterest(peer)
      }
    }
    if (this.picker.complete) this.onComplete()
  }

  private onComplete(): void {
    this.state = 'seeding'
    this.stats.finishedAt = Date.now()
    const s = this.stats
    const seconds = Math.max(0.001, (s.finishedAt! - s.startedAt) / 1000)
    this.log.info(
      { ...s, seconds, mbps: Math.round((this.downloaded / seconds / 1e6) * 10) / 10 },
      'download finished',
    )
    for (const peer of [...this.peers.values()]) {
      if (peer.bits?.complete) peer.close('both seeding')
      else this.updateInterest(peer)
    }
    this.announcer.completed()
    this.waiters.resolveAll(this.snapshot())
  }

  private fillAll(): void {
    if (this.state !== 'downloading') return
    this.scheduler.fillAll(this.peers.values(), Date.now())
  }

  // ----- housekeeping -----

  private readonly tick = (): void => {
    try {
      const now = Date.now()
      const o = this.ctx.options
      if (this.state === 'downloading' && this.scheduler.expire(this.peers.values(), now, o.requestTimeoutMs))
        this.fillAll()
      for (const peer of [...this.peers.values()]) {
        if (now - peer.lastRecvAt > DEFAULTS.idleTimeoutMs) peer.close('idle')
        else if (now - peer.lastSendAt > DEFAULTS.keepAliveMs) peer.wire.keepAlive()
      }
    } catch (err) {
      this.log.error({ err }, 'torrent tick failed')
    }
  }

  private readonly onAllWaitersGone = (): void => {
    // Every caller gave up: stop fetching (what was written stays for a later resume).
    if (this.state === 'downloading') this.ctx.removeTorrent(this, 'download aborted')
  }
}

function popcount(b: number): number {
  b -= (b >> 1) & 0x55
  b = (b & 0x33) + ((b >> 2) & 0x33)
  return (b + (b >> 4)) & 0x0f
}
