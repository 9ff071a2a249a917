/**
 * The upload side of one torrent: choking and serving requests.
 *
 * Choking is for a cooperative cluster, where every peer is ours: no tit-for-tat (what a peer
 * uploads to us never decides whether it gets served, so nobody starves for having nothing to
 * give yet). Every interested peer is unchoked while there are slots (bounded: each slot is a
 * read loop and socket buffers). With more interested peers than slots, the rest wait and get
 * a slot when one frees: a peer loses interest or leaves, unchoked peers have asked for
 * nothing for slotIdleMs (each such slot goes to a waiting peer), or, every
 * optimisticUnchokeMs, the peer unchoked longest is rotated out, so no interested peer waits
 * forever behind busy ones.
 *
 * Not every peer that says "interested" downloads (a fake peer may, to hold slots). Waiting
 * peers are ranked: first those that never wasted a slot (given one, they asked for nothing
 * with it: wastedSince), then those the tracker handed out (listed), then by how
 * long they waited. A contended torrent (peers wait for a slot, or its connections are full)
 * closes peers that wasted a slot and asked for nothing for idlePeerEvictMs since; a full
 * torrent closes one at once to let a new peer in (victim()).
 *
 * Serving is one storage read at a time per peer, paced by the socket ('drain'), so uploads
 * never pile up in memory. With BEP 6, every request we will not serve gets a reject.
 *
 * Owns, per peer, the PeerUpload record (peer-upload.ts, `peer.up`), created in attach(); its
 * ServeOnce keeps the record's `refused` list. What we told the peer (amChoking) is the
 * connection's: the Uploader changes it only through Peer.choke() / unchoke().
 */
import type { Clock } from '../../bandwidth/index.js'
import type { MetaInfo } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { EngineMetrics } from '../engine/context.js'
import { DEFAULTS, type TorrentStorage } from '../types.js'
import type { Bitfield } from '../wire/bitfield.js'
import type { Peer } from '../wire/peer.js'
import type { BlockPool } from './block-pool.js'
import { ownUpload, PeerUpload } from './peer-upload.js'
import type { ServeOnce } from './serve-once.js'

/** A piece message's framing: length prefix, id, index, offset (what the cap also pays for). */
const PIECE_HEADER = 13

export interface UploaderOptions {
  meta: MetaInfo
  storage: TorrentStorage
  /** Where block buffers come from; the peer gives each back once its socket took it. */
  blocks: BlockPool
  have: Bitfield
  slots: number
  optimisticUnchokeMs: number
  slotIdleMs: number
  /** A contended torrent closes a peer that wasted its slot this long ago and asked for nothing since. */
  idlePeerEvictMs: number
  metrics: EngineMetrics
  log: Logger
  /** Origins: send each piece about once while the uplink is capped (serve-once.ts). */
  serveOnce?: ServeOnce | undefined
  /** The engine's clock (serve-once's windows; every other time is passed in). */
  clock: Clock
}

export class Uploader {
  /** Block bytes actually handed to peers' sockets (cancelled requests are not counted). */
  bytesUploaded = 0
  private unchoked = 0
  /** When a slot last rotated (or, while nobody waited, the last tick). */
  private lastRotation = 0
  private readonly o: UploaderOptions
  /** tick()'s scratch lists, kept empty between ticks. */
  private readonly waiting: Peer[] = []
  private readonly idle: Peer[] = []
  private readonly wasting: Peer[] = []

  constructor(o: UploaderOptions) {
    this.o = o
  }

  /** Peers holding an upload slot. */
  get slotsUsed(): number {
    return this.unchoked
  }

  /** The torrent took the connection; `listed`: the tracker handed out its IP (PeerSet). */
  attach(peer: Peer, listed: boolean): void {
    peer.up = new PeerUpload(DEFAULTS.maxPeerRequests, listed)
  }

  /** The tracker's latest answers do (or no longer) list the peer's IP. */
  setListed(peer: Peer, listed: boolean): void {
    ownUpload(peer).listed = listed
  }

  onInterested(peer: Peer, now: number): void {
    if (!peer.amChoking) return
    const up = ownUpload(peer)
    if (this.unchoked < this.o.slots) this.unchoke(peer, now)
    else if (up.waitingSince === 0) up.waitingSince = now
  }

  onUninterested(peer: Peer, peers: Iterable<Peer>, now: number): void {
    ownUpload(peer).waitingSince = 0
    if (peer.amChoking) return
    this.choke(peer)
    this.unchokeWaiting(peers, now)
  }

  /** A peer went away: its queue goes, and its slot to someone waiting. */
  onClosed(peer: Peer, peers: Iterable<Peer>, now: number): void {
    this.o.serveOnce?.forget(peer)
    const up = ownUpload(peer)
    up.requests.clear()
    up.waitingSince = 0
    if (peer.amChoking) return
    peer.choke() // closed: sends nothing
    this.unchoked--
    this.unchokeWaiting(peers, now)
  }

  onRequest(peer: Peer, index: number, offset: number, length: number): void {
    if (this.queueRequest(peer, index, offset, length) && !ownUpload(peer).serving) void this.serve(peer)
  }

  /**
   * onRequest's decision, free of storage and sockets (test/bench/sim drives it): rejects the
   * request, closes the peer, or queues it (true).
   */
  queueRequest(peer: Peer, index: number, offset: number, length: number): boolean {
    const up = ownUpload(peer)
    up.lastRequestAt = peer.lastRecvAt // the read that carried it
    const meta = this.o.meta
    if (
      index >= meta.pieceCount ||
      length === 0 ||
      length > peer.blockSize || // the block size negotiated with this peer, 16 KiB for stock clients
      offset + length > meta.pieceSize(index)
    ) {
      peer.close(`invalid request ${index}:${offset}+${length}`)
      return false
    }
    // Choked (BEP 6: reject it), or a piece we do not have (a peer that asks anyway is broken).
    if (peer.amChoking || !this.o.have.has(index)) {
      if (!peer.fast) {
        if (!peer.amChoking) peer.close(`request for missing piece ${index}`)
        return false
      }
      peer.sendReject(index, offset, length)
      return false
    }
    const once = this.o.serveOnce
    if (once !== undefined && !once.admit(peer, index, this.o.clock.now())) {
      peer.sendReject(index, offset, length)
      return false
    }
    if (!up.requests.push(index, offset, length)) {
      peer.close('request flood')
      return false
    }
    return true
  }

  /** BEP 6: a cancelled request that was still queued is answered with a reject. */
  onCancel(peer: Peer, index: number, offset: number, length: number): void {
    if (ownUpload(peer).requests.remove(index, offset, length)) this.withdraw(peer, index, offset, length)
  }

  /**
   * From the torrent's tick. Only when someone waits: every idle slot (an unchoked peer that
   * asked for nothing for slotIdleMs) goes to a waiting peer, best ranked first; with none
   * idle, every optimisticUnchokeMs the longest-unchoked peer makes way for the best-ranked
   * waiting one. Then, when the torrent is contended (someone still waits, or `full`: its
   * connections are at the limit), peers that wasted a slot idlePeerEvictMs ago and asked for
   * nothing since are closed. Runs once a second: the arrays are only filled when peers wait.
   */
  tick(peers: Iterable<Peer>, now: number, full = false): void {
    this.o.serveOnce?.tick(peers, now)
    const waiting = this.waiting
    const idle = this.idle
    const wasting = this.wasting
    let oldest: Peer | undefined
    for (const p of peers) {
      if (p.closed) continue
      const up = ownUpload(p)
      if (up.wastedSince > 0) {
        // Asked for something with the slot it holds: it downloads after all.
        if (!p.amChoking && up.lastRequestAt >= up.unchokedAt) up.wastedSince = 0
        // A peer we download from stays, whatever it does with our slot.
        else if (now - up.wastedSince >= this.o.idlePeerEvictMs && !up.serving && !p.amInterested)
          wasting.push(p)
      }
      if (p.amChoking) {
        if (up.waitingSince > 0 && p.peerInterested) waiting.push(p)
        continue
      }
      if (now - Math.max(up.unchokedAt, up.lastRequestAt) >= this.o.slotIdleMs && !up.serving) idle.push(p)
      if (oldest === undefined || up.unchokedAt < oldest.up.unchokedAt) oldest = p
    }
    // Contended: more peers wait than there are free slots, or no connection is free.
    const contended = full || waiting.length > this.o.slots - this.unchoked
    try {
      if (waiting.length === 0 || this.lastRotation === 0) {
        // Nobody waits: the rotation clock starts when someone does.
        this.lastRotation = now
      }
      if (waiting.length > 1) waiting.sort(byRank)
      let next = 0
      while (next < waiting.length && this.unchoked < this.o.slots) this.unchoke(waiting[next++]!, now)
      if (next < waiting.length && idle.length > 0) {
        // Idle slots: the most wasteful holders first (they may be idle because they are fake).
        if (idle.length > 1) idle.sort(byWaste)
        for (let i = 0; i < idle.length && next < waiting.length; i++) {
          this.takeSlot(idle[i]!, now)
          this.unchoke(waiting[next++]!, now)
        }
        this.lastRotation = now
      } else if (
        next < waiting.length &&
        oldest !== undefined &&
        now - this.lastRotation >= this.o.optimisticUnchokeMs
      ) {
        this.lastRotation = now
        this.takeSlot(oldest, now)
        this.unchoke(waiting[next++]!, now)
      }
      if (wasting.length > 0 && contended) {
        for (const p of wasting) {
          this.o.metrics.evicted.inc()
          p.close('idle peer evicted: it asked for nothing with its upload slot')
        }
      }
    } finally {
      waiting.length = 0
      idle.length = 0
      wasting.length = 0
    }
  }

  /**
   * The torrent is full and a new peer handshook: a peer to close for it, if one does not use
   * its connection (it wasted an upload slot and asked for nothing since, or neither side has
   * been interested for slotIdleMs) and we want nothing from it. Peers the tracker did not
   * hand out go first, then the longest idle.
   */
  victim(peers: Iterable<Peer>, now: number): Peer | undefined {
    let best: Peer | undefined
    let bestSince = 0
    for (const p of peers) {
      const up = p.up
      // A peer we download from (or want to) is never the one to go.
      if (p.closed || up.serving || p.amInterested) continue
      let since = 0
      if (up.wastedSince > 0 && (p.amChoking || up.lastRequestAt < up.unchokedAt)) since = up.wastedSince
      else if (p.idleSince > 0 && now - p.idleSince >= this.o.slotIdleMs) since = p.idleSince
      if (since === 0) continue
      if (
        best === undefined ||
        (best.up.listed && !up.listed) ||
        (best.up.listed === up.listed && since < bestSince)
      ) {
        best = p
        bestSince = since
      }
    }
    return best
  }

  private unchoke(peer: Peer, now: number): void {
    const up = ownUpload(peer)
    up.waitingSince = 0
    up.unchokedAt = now
    this.unchoked++
    peer.unchoke()
  }

  /** Takes the peer's slot back; with BEP 6 its queued requests are rejected, else dropped. */
  private choke(peer: Peer): void {
    if (peer.amChoking) return
    this.unchoked--
    peer.choke()
    const q = ownUpload(peer).requests
    while (q.shift()) this.withdraw(peer, q.index, q.offset, q.length)
  }

  /**
   * Takes an unchoked peer's slot for a waiting one (idle, or rotation). Whether it used the
   * slot decides its rank: one that asked for nothing since it was unchoked wastes slots.
   */
  private takeSlot(peer: Peer, now: number): void {
    const up = ownUpload(peer)
    if (up.lastRequestAt >= up.unchokedAt) up.wastedSince = 0
    else if (up.wastedSince === 0) up.wastedSince = now
    this.choke(peer)
    if (peer.peerInterested) up.waitingSince = now
  }

  /** A queued request will not be served after all: reject it (BEP 6). */
  private withdraw(peer: Peer, index: number, offset: number, length: number): void {
    this.o.serveOnce?.withdrawn(peer, index)
    peer.sendReject(index, offset, length)
  }

  private unchokeWaiting(peers: Iterable<Peer>, now: number): void {
    while (this.unchoked < this.o.slots) {
      let next: Peer | undefined
      for (const p of peers) {
        if (p.closed || !p.amChoking || !p.peerInterested) continue
        if (next === undefined || ranksBefore(p, p.up.waitingSince || now, next, next.up.waitingSince || now))
          next = p
      }
      if (next === undefined) return
      this.unchoke(next, now)
    }
  }

  private async serve(peer: Peer): Promise<void> {
    const up = ownUpload(peer)
    up.serving = true
    const q = up.requests
    try {
      while (!peer.closed) {
        // The host's egress cap: the block is paid for before it is read, so a throttled
        // peer holds no block in memory, and one cancelled meanwhile is never sent. The
        // promise exists only when the cap makes us wait.
        const out = peer.bwOut
        if (out !== undefined) {
          const n = q.peekLength()
          if (n === 0) break
          const w = out.wait(n + PIECE_HEADER)
          if (w !== undefined) {
            await w
            if (peer.closed) break
          }
        }
        if (!q.shift()) break
        const index = q.index
        const offset = q.offset
        const length = q.length
        const pool = this.o.blocks
        const buf = pool.take(length)
        let block: Buffer
        try {
          block = await this.o.storage.readBlock(index, offset, length, buf)
          if (block.length !== length) {
            throw new ShoalError('IO_ERROR', `storage returned ${block.length} bytes, ${length} asked`)
          }
        } catch (err) {
          pool.give(buf)
          this.o.log.warn({ err, piece: index, offset }, 'cannot read block for a peer')
          this.withdraw(peer, index, offset, length) // BEP 6 peers hear it; others time out
          continue
        }
        // Choked while reading: the choke rejected what was queued; this one too.
        if (peer.closed || peer.amChoking) {
          pool.give(buf)
          if (peer.closed) break
          this.withdraw(peer, index, offset, length)
          continue
        }
        // The one place piece data leaves (Peer.sendPiece); paid for at the top of the loop.
        // `buf` goes back to the pool once the socket has taken the block (a storage that
        // returned a buffer of its own leaves `buf` unused: it goes back with the write).
        peer.sendPiece(index, offset, block, buf, pool)
        this.o.serveOnce?.sent(peer, index, this.o.clock.now())
        this.bytesUploaded += length
        this.o.metrics.sent.inc(length)
        if (peer.socket.writableNeedDrain) await peer.waitDrain()
      }
    } catch (err) {
      this.o.log.warn({ err, peer: peer.addr }, 'serving a peer failed')
      peer.close('serve error')
    } finally {
      up.serving = false
    }
  }
}

/**
 * Whether waiting peer a (waiting since sinceA) gets a slot before b: peers that never wasted
 * one first, then the ones the tracker handed out, then the longest waiting.
 */
function ranksBefore(a: Peer, sinceA: number, b: Peer, sinceB: number): boolean {
  const wa = a.up.wastedSince > 0
  if (wa !== b.up.wastedSince > 0) return !wa
  if (a.up.listed !== b.up.listed) return a.up.listed
  return sinceA < sinceB
}

function byRank(a: Peer, b: Peer): number {
  const sa = a.up.waitingSince
  const sb = b.up.waitingSince
  return ranksBefore(a, sa, b, sb) ? -1 : ranksBefore(b, sb, a, sa) ? 1 : 0
}

/** Idle slot holders, the first to lose their slot first: wasters, not listed, idle longest. */
function byWaste(a: Peer, b: Peer): number {
  const ua = a.up
  const ub = b.up
  const wa = ua.lastRequestAt < ua.unchokedAt
  if (wa !== ub.lastRequestAt < ub.unchokedAt) return wa ? -1 : 1
  if (ua.listed !== ub.listed) return ua.listed ? 1 : -1
  return Math.max(ua.unchokedAt, ua.lastRequestAt) - Math.max(ub.unchokedAt, ub.lastRequestAt)
}
