/**
 * One torrent in the engine: its lifecycle (seeding, downloading, removed) and the callers
 * waiting for it, its connections, the announce loop, and keep-alive/idle housekeeping.
 * Each peer's messages arrive here (PeerOwner) and go to the side they concern: what peers
 * have and the request/receive path to Downloader, choking and serving to Uploader.
 * Connection bookkeeping lives in PeerSet, sockets and framing in Peer. The per-peer state of
 * each side is that side's record (peer.down: Downloader, peer.up: Uploader), created when a
 * peer attaches; Torrent only reads them.
 */
import { Limiter } from '../../bandwidth/index.js'
import type { MetaInfo } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { Downloader, type DownloadHost } from '../download/downloader.js'
import {
  type AnnouncePeer,
  type BadPiece,
  classifyPeerId,
  DEFAULTS,
  type DownloadStats,
  type TorrentStorage,
} from '../types.js'
import { ServeOnce } from '../upload/serve-once.js'
import { Uploader } from '../upload/uploader.js'
import type { Peer, PeerOwner } from '../wire/peer.js'
import { MSG } from '../wire/wire.js'
import { Announcer, type AnnounceTarget } from './announcer.js'
import type { EngineContext } from './context.js'
import { PeerSet } from './peer-set.js'
import { Waiters } from './waiters.js'

export type TorrentState = 'seeding' | 'downloading' | 'removed'

export class Torrent implements PeerOwner, DownloadHost, AnnounceTarget {
  readonly meta: MetaInfo
  readonly storage: TorrentStorage
  readonly ctx: EngineContext
  readonly infoHashHex: string
  readonly infoHashBuf: Buffer
  /** The engine's logger with this torrent's infohash. */
  readonly log: Logger
  readonly peers: PeerSet
  private readonly downloader: Downloader
  private readonly uploader: Uploader
  private readonly announcer: Announcer
  private readonly waiters = new Waiters<DownloadStats>()
  /** Told after a peer was banned for a bad piece (DownloadHost); set by TorrentEngine.download. */
  onBadPiece: ((bad: BadPiece) => void) | undefined = undefined
  private state: TorrentState
  private tickTimer: unknown
  /** This download's own ingress cap (setIngressCap), under the host's; none until asked for. */
  private ingressCap: Limiter | undefined = undefined

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
    this.peers = new PeerSet(ctx, this.infoHashHex)
    this.downloader = new Downloader(this)
    this.uploader = new Uploader({
      meta,
      storage,
      blocks: ctx.blocks,
      have: this.downloader.have,
      slots: ctx.options.uploadSlots,
      optimisticUnchokeMs: ctx.options.optimisticUnchokeMs,
      slotIdleMs: ctx.options.slotIdleMs,
      idlePeerEvictMs: ctx.options.idlePeerEvictMs,
      metrics: ctx.metrics,
      log: this.log,
      serveOnce: serveOnceFor(meta, ctx),
      clock: ctx.clock,
    })
    this.state = this.downloader.complete ? 'seeding' : 'downloading'
    this.announcer = new Announcer(this, {
      source: ctx.peerSource,
      peerId: ctx.peerId,
      port: () => ctx.port,
      numwant: ctx.options.maxConnectionsPerTorrent,
      logger: this.log,
    })
    this.tickTimer = ctx.clock.setTimer(this.onTickTimer, DEFAULTS.tickMs)
  }

  get infoHash() {
    return this.meta.infoHash
  }

  get complete(): boolean {
    return this.downloader.complete
  }

  get downloading(): boolean {
    return this.state === 'downloading'
  }

  get removed(): boolean {
    return this.state === 'removed'
  }

  /** Seeding needs nothing but the announce; downloading also logs its start. */
  start(): void {
    const missing = this.meta.pieceCount - this.downloader.have.count
    if (this.state === 'downloading') {
      this.log.info({ pieces: this.meta.pieceCount, missing, length: this.meta.length }, 'download started')
    } else if (this.complete) {
      this.log.debug({ pieces: this.meta.pieceCount, length: this.meta.length }, 'seeding')
    } else {
      this.log.warn({ missing }, 'seeding an incomplete torrent')
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
    const stats = { ...this.downloader.stats, bytesUploaded: this.uploader.bytesUploaded }
    return this.ingressCap === undefined ? stats : { ...stats, ingressCapBytesPerSec: this.ingressCap.rate }
  }

  /**
   * Caps what this torrent reads from its peers, on top of the host's ingress cap (0 =
   * unlimited). The limiter is made on first use only, so torrents never capped pay nothing;
   * connections already open join it at once.
   */
  setIngressCap(bytesPerSec: number): void {
    if (this.state === 'removed') return
    if (this.ingressCap !== undefined) {
      this.ingressCap.setRate(bytesPerSec)
      return
    }
    if (bytesPerSec === 0) return
    const cap = new Limiter({ direction: 'ingress', bytesPerSec, clock: this.ctx.clock, logger: this.log })
    this.ingressCap = cap
    for (const peer of this.peers.all()) peer.useIngressCap(cap, this.infoHashHex)
  }

  /** Closes everything; resolves when the 'stopped' announce went out (or gave up). */
  destroy(reason: string): Promise<void> {
    if (this.state === 'removed') return Promise.resolve()
    this.state = 'removed'
    if (this.tickTimer !== undefined) this.ctx.clock.clearTimer(this.tickTimer)
    this.tickTimer = undefined
    for (const peer of this.peers.all()) peer.close(reason)
    this.ingressCap?.close()
    this.waiters.rejectAll(new ShoalError('ABORTED', `torrent ${reason}`))
    return this.announcer.stop()
  }

  // ----- DownloadHost -----

  onDownloaded(): void {
    this.state = 'seeding'
    this.announcer.completed()
    this.waiters.resolveAll(this.snapshot())
  }

  onStorageFailed(err: ShoalError): void {
    this.waiters.rejectAll(err)
    this.ctx.removeTorrent(this, 'storage failed')
  }

  // ----- AnnounceTarget -----

  counters(): { uploaded: number; downloaded: number; left: number } {
    return {
      uploaded: this.uploader.bytesUploaded,
      downloaded: this.downloader.downloaded,
      left: this.downloader.left,
    }
  }

  hungry(): boolean {
    return this.state === 'downloading' && this.peers.size < DEFAULTS.hungryPeerCount
  }

  onPeers(list: AnnouncePeer[]): void {
    // Who the tracker hands out are real peers: the choker prefers them (seeding too).
    const peers = this.peers
    peers.noteListed(list)
    for (const peer of peers.values()) this.uploader.setListed(peer, peers.isListed(peer.ip))
    // Seeds wait to be dialled: leechers know about them from the tracker.
    if (this.state !== 'downloading') return
    for (const p of this.peers.toDial(list)) this.peers.addDial(this.ctx.dial(this, p.ip, p.port))
  }

  // ----- connections -----

  /** Takes a handshaken connection; false when it must be closed (full, duplicate). */
  attach(peer: Peer): boolean {
    if (this.state === 'removed' || !this.peers.add(peer, this.makeRoom)) return false
    this.downloader.attach(peer)
    this.uploader.attach(peer, this.peers.isListed(peer.ip))
    peer.attach(this, this.log)
    const bw = this.ctx.bandwidth
    if (bw !== undefined) peer.useBandwidth(bw, this.infoHashHex)
    if (this.ingressCap !== undefined) peer.useIngressCap(this.ingressCap, this.infoHashHex)
    // BEP 10 first (a Shoal peer learns the block size before it can request), then what we
    // have: BEP 6 have-all / have-none where they apply, else a bitfield (none when empty).
    peer.sendExtendedHandshake(this.ctx.port, this.ctx.zone)
    const have = this.downloader.have
    if (have.complete && peer.fast) peer.sendBare(MSG.HAVE_ALL)
    else if (have.empty) {
      if (peer.fast) peer.sendBare(MSG.HAVE_NONE)
    } else peer.sendBitfield(have.buffer)
    this.ctx.metrics.peers.inc()
    const fields = { peer: peer.addr, peerId: peer.idHex, cls: peer.cls, direction: peer.direction }
    peer.log.debug(fields, 'peer connected')
    return true
  }

  /** The torrent is full and a peer handshook: close one that does not use its connection. */
  private readonly makeRoom = (): void => {
    const victim = this.uploader.victim(this.peers.values(), this.ctx.clock.now())
    if (victim === undefined) return
    this.ctx.metrics.evicted.inc()
    victim.close('idle peer evicted for a new one')
  }

  /** An outgoing connection closed (before or after its handshake). */
  onDialClosed(peer: Peer): void {
    this.peers.onDialClosed(peer)
  }

  onClose(peer: Peer): void {
    if (!this.peers.delete(peer)) return
    this.ctx.metrics.peers.dec()
    this.downloader.onPeerClosed(peer)
    this.uploader.onClosed(peer, this.peers.values(), this.ctx.clock.now())
    this.downloader.fillAll()
  }

  // ----- peer messages: what it has, and our requests (Downloader) -----

  onBitfield(peer: Peer, data: Uint8Array): void {
    this.downloader.onBitfield(peer, data)
  }

  onHaveAll(peer: Peer): void {
    this.downloader.onHaveAll(peer)
  }

  onHaveNone(peer: Peer): void {
    this.downloader.onHaveNone(peer)
  }

  onHave(peer: Peer, index: number): void {
    this.downloader.onHave(peer, index)
  }

  onChoke(peer: Peer): void {
    this.downloader.onChoke(peer)
  }

  onUnchoke(peer: Peer): void {
    this.downloader.onUnchoke(peer)
  }

  onReject(peer: Peer, index: number, offset: number, length: number): void {
    this.downloader.onReject(peer, index, offset, length)
  }

  onPiece(peer: Peer, index: number, offset: number, block: Buffer): void {
    this.downloader.onPiece(peer, index, offset, block)
  }

  // ----- peer messages: choking and serving (Uploader) -----

  onInterested(peer: Peer): void {
    this.uploader.onInterested(peer, this.ctx.clock.now())
  }

  onUninterested(peer: Peer): void {
    this.uploader.onUninterested(peer, this.peers.values(), this.ctx.clock.now())
  }

  onRequest(peer: Peer, index: number, offset: number, length: number): void {
    this.uploader.onRequest(peer, index, offset, length)
  }

  onCancel(peer: Peer, index: number, offset: number, length: number): void {
    this.uploader.onCancel(peer, index, offset, length)
  }

  // ----- housekeeping -----

  /** The tick's timer, re-armed each time (the system clock reuses its Timeout). */
  private readonly onTickTimer = (): void => {
    if (this.state === 'removed') return
    this.tickTimer = this.ctx.clock.rearmTimer(this.tickTimer, this.onTickTimer, DEFAULTS.tickMs)
    this.tick()
  }

  /**
   * Once a second: request timeouts, choking rotation, and idle eviction: a connection that
   * sent nothing at all for idleTimeoutMs; seeding, one whose peer stayed uninterested for
   * seedIdleTimeoutMs (it has what it wants, or wants nothing from us); downloading, one no
   * block went over, either way, for leechIdleTimeoutMs (unless we wait for its upload slot:
   * reconnecting would put us at the back of its queue). Seed-to-seed connections are closed
   * as soon as both sides are complete (Downloader).
   */
  private tick(): void {
    try {
      const now = this.ctx.clock.now()
      const o = this.ctx.options
      this.downloader.expire(now)
      this.uploader.tick(this.peers.values(), now, this.peers.size >= o.maxConnectionsPerTorrent)
      const downloading = this.state === 'downloading'
      for (const peer of [...this.peers.values()]) {
        if (now - peer.lastRecvAt > DEFAULTS.idleTimeoutMs) peer.close('idle')
        else if (!downloading && peer.idleSince > 0 && now - peer.idleSince > o.seedIdleTimeoutMs)
          peer.close('idle seed connection')
        else if (downloading && now - peer.lastBlockAt > o.leechIdleTimeoutMs && !waitingForSlot(peer))
          peer.close('idle leech connection')
        else if (now - peer.lastSendAt > DEFAULTS.keepAliveMs) peer.keepAlive()
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

/** An origin's ServeOnce, active while its egress is capped (the cap may change at run time). */
function serveOnceFor(meta: MetaInfo, ctx: EngineContext): ServeOnce | undefined {
  const windowMs = ctx.options.originServeOnceMs
  if (windowMs <= 0 || classifyPeerId(ctx.peerId) !== 'origin') return undefined
  const refused = ctx.metrics.refused
  return new ServeOnce(
    meta.pieceCount,
    windowMs,
    () => ctx.bandwidth !== undefined && ctx.bandwidth.egress.rate > 0,
    () => refused.inc(),
  )
}

/** We want pieces from the peer and it chokes us: we are queued for one of its upload slots. */
function waitingForSlot(peer: Peer): boolean {
  return peer.amInterested && peer.down.peerChoking
}
