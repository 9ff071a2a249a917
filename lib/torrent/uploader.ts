/**
 * The upload side of one torrent: the cooperative choking policy (unchoke every interested
 * peer, up to a slot limit; the cluster is friendly, so no tit-for-tat) and serving requests,
 * one storage read at a time per peer, paced by the socket so uploads never pile up in memory.
 */
import type { MetaInfo } from '../core/index.js'
import { ShoalError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import type { Bitfield } from './bitfield.js'
import type { EngineMetrics } from './context.js'
import type { Peer, Respond } from './peer.js'
import { DEFAULTS, MAX_SERVE_BLOCK, type TorrentStorage } from './types.js'

export class Uploader {
  /** Block bytes actually handed to peers' sockets (cancelled requests are not counted). */
  bytesUploaded = 0
  private unchoked = 0
  private readonly meta: MetaInfo
  private readonly storage: TorrentStorage
  private readonly have: Bitfield
  private readonly slots: number
  private readonly metrics: EngineMetrics
  private readonly log: Logger

  constructor(o: {
    meta: MetaInfo
    storage: TorrentStorage
    have: Bitfield
    slots: number
    metrics: EngineMetrics
    log: Logger
  }) {
    this.meta = o.meta
    this.storage = o.storage
    this.have = o.have
    this.slots = o.slots
    this.metrics = o.metrics
    this.log = o.log
  }

  onInterested(peer: Peer): void {
    if (!peer.unchokedByUs && this.unchoked < this.slots) {
      peer.unchokedByUs = true
      this.unchoked++
      peer.wire.unchoke()
    }
  }

  onUninterested(peer: Peer, peers: Iterable<Peer>): void {
    if (!this.freeSlot(peer)) return
    peer.wire.choke()
    peer.serveQueue.length = 0
    this.unchokeWaiting(peers)
  }

  /** A peer went away: give its slot to someone waiting. */
  onClosed(peer: Peer, peers: Iterable<Peer>): void {
    if (this.freeSlot(peer)) this.unchokeWaiting(peers)
  }

  onRequest(peer: Peer, index: number, offset: number, length: number, respond: Respond): void {
    if (
      !Number.isInteger(index) ||
      index < 0 ||
      index >= this.meta.pieceCount ||
      !this.have.has(index) ||
      offset < 0 ||
      length <= 0 ||
      length > MAX_SERVE_BLOCK ||
      offset + length > this.meta.pieceSize(index)
    ) {
      peer.close(`invalid request ${index}:${offset}+${length}`)
      return
    }
    if (peer.serveQueue.length >= DEFAULTS.maxPeerRequests) {
      peer.close('request flood')
      return
    }
    peer.serveQueue.push({ index, offset, length, respond })
    if (!peer.serving) void this.serve(peer)
  }

  /** Takes back the peer's upload slot; false when it did not hold one. */
  private freeSlot(peer: Peer): boolean {
    if (!peer.unchokedByUs) return false
    peer.unchokedByUs = false
    this.unchoked--
    return true
  }

  private unchokeWaiting(peers: Iterable<Peer>): void {
    for (const p of peers) {
      if (this.unchoked >= this.slots) return
      if (p.wire.peerInterested && !p.unchokedByUs && !p.closed) this.onInterested(p)
    }
  }

  private async serve(peer: Peer): Promise<void> {
    peer.serving = true
    try {
      while (!peer.closed && peer.serveQueue.length > 0) {
        const r = peer.serveQueue.shift()!
        let block: Buffer
        try {
          block = await this.storage.readBlock(r.index, r.offset, r.length)
          if (block.length !== r.length) {
            throw new ShoalError('IO_ERROR', `storage returned ${block.length} bytes, ${r.length} asked`)
          }
        } catch (err) {
          this.log.warn({ err, piece: r.index, offset: r.offset }, 'cannot read block for a peer')
          if (!peer.closed) r.respond(err as Error) // BEP 6 peers get a reject
          continue
        }
        if (peer.closed) break
        const before = peer.wire.uploaded
        r.respond(null, block) // Wire drops it if the peer cancelled meanwhile
        const sent = peer.wire.uploaded - before
        if (sent > 0) {
          this.bytesUploaded += sent
          this.metrics.sent.inc(sent)
        }
        if (peer.socket.writableNeedDrain) await peer.waitDrain()
      }
    } catch (err) {
      this.log.warn({ err, peer: peer.addr }, 'serving a peer failed')
      peer.close('serve error')
    } finally {
      peer.serving = false
    }
  }
}
