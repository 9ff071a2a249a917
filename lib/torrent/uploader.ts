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
 * with it: Peer.wastedSince), then those the tracker handed out (Peer.listed), then by how
 * long they waited. A contended torrent (peers wait for a slot, or its connections are full)
 * closes peers that wasted a slot and asked for nothing for idlePeerEvictMs since; a full
 * torrent closes one at once to let a new peer in (victim()).
 *
 * Serving is one storage read at a time per peer, paced by the socket ('drain'), so uploads
 * never pile up in memory. With BEP 6, every request we will not serve gets a reject.
 */
import type { Clock } from '../bandwidth/index.js'
import type { MetaInfo } from '../core/index.js'
import { ShoalError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import type { Bitfield } from './bitfield.js'
import type { BlockPool } from './block-pool.js'
import type { EngineMetrics } from './context.js'
import type { Peer } from './peer.js'
import type { ServeOnce } from './serve-once.js'
import type { TorrentStorage } from './types.js'

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

  onInterested(peer: Peer, now: number): void {
    if (!peer.amChoking) return
    if (this.unchoked < this.o.slots) this.unchoke(peer, now)
    else if (peer.waitingSince === 0) peer.waitingSince = now
  }

  onUninterested(peer: Peer, peers: Iterable<Peer>, now: number): void {
    peer.waitingSince = 0
    if (peer.amChoking) return
    this.choke(peer)
    this.unchokeWaiting(peers, now)
  }

  /** A peer went away: give its slot to someone waiting. */
  onClosed(peer: Peer, peers: Iterable<Peer>, now: number): void {
    this.o.serveOnce?.forget(peer)
    peer.waitingSince = 0
    if (peer.amChoking) return
    peer.amChoking = true
    this.unchoked--
    this.unchokeWaiting(peers, now)
  }

  onRequest(peer: Peer, index: number, offset: number, length: number): void {
    const meta = this.o.meta
    if (
      index >= meta.pieceCount ||
      length === 0 ||
      length > peer.blockSize || // the block size negotiated with this peer, 16 KiB for stock clients
      offset + length > meta.pieceSize(index)
    ) {
      peer.close(`invalid request ${index}:${offset}+${length}`)
      return
    }
    // Choked (BEP 6: reject it), or a piece we do not have (a peer that asks anyway is broken).
    if (peer.amChoking || !this.o.have.has(index)) {
      if (!peer.fast) {
        if (!peer.amChoking) peer.close(`request for missing piece ${index}`)
        return
      }
      peer.sendReject(index, offset, length)
      return
    }
    const once = this.o.serveOnce
    if (once !== undefined && !once.admit(peer, index, this.o.clock.now())) {
      peer.sendReject(index, offset, length)
      return
    }
    if (!peer.requests.push(index, offset, length)) {
      peer.close('request flood')
      return
    }
    if (!peer.serving) void this.serve(peer)
  }

  /** BEP 6: a cancelled request that was still queued is answered with a reject. */
  onCancel(peer: Peer, index: number, offset: number, length: number): void {
    if (peer.requests.remove(index, offset, length)) this.withdraw(peer, index, offset, length)
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
      if (p.wastedSince > 0) {
        // Asked for something with the slot it holds: it downloads after all.
        if (!p.amChoking && p.lastRequestAt >= p.unchokedAt) p.wastedSince = 0
        // A peer we download from stays, whatever it does with our slot.
        else if (now - p.wastedSince >= this.o.idlePeerEvictMs && !p.serving && !p.amInterested)
          wasting.push(p)
      }
      if (p.amChoking) {
        if (p.waitingSince > 0 && p.peerInterested) waiting.push(p)
        continue
      }
      if (now - Math.max(p.unchokedAt, p.lastRequestAt) >= this.o.slotIdleMs && !p.serving) idle.push(p)
      if (oldest === undefined || p.unchokedAt < oldest.unchokedAt) oldest = p
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
      // A peer we download from (or want to) is never the one to go.
      if (p.closed || p.serving || p.amInterested) continue
      let since = 0
      if (p.wastedSince > 0 && (p.amChoking || p.lastRequestAt < p.unchokedAt)) since = p.wastedSince
      else if (p.idleSince > 0 && now - p.idleSince >= this.o.slotIdleMs) since = p.idleSince
      if (since === 0) continue
      if (
        best === undefined ||
        (best.listed && !p.listed) ||
        (best.listed === p.listed && since < bestSince)
      ) {
        best = p
        bestSince = since
      }
    }
    return best
  }

  private unchoke(peer: Peer, now: number): void {
    peer.waitingSince = 0
    peer.unchokedAt = now
    this.unchoked++
    peer.unchoke()
  }

  /** Takes the peer's slot back; with BEP 6 its queued requests are rejected, else dropped. */
  private choke(peer: Peer): void {
    if (peer.amChoking) return
    this.unchoked--
    peer.choke()
    const q = peer.requests
    while (q.shift()) this.withdraw(peer, q.index, q.offset, q.length)
  }

  /**
   * Takes an unchoked peer's slot for a waiting one (idle, or rotation). Whether it used the
   * slot decides its rank: one that asked for nothing since it was unchoked wastes slots.
   */
  private takeSlot(peer: Peer, now: number): void {
    if (peer.lastRequestAt >= peer.unchokedAt) peer.wastedSince = 0
    else if (peer.wastedSince === 0) peer.wastedSince = now
    this.choke(peer)
    if (peer.peerInterested) peer.waitingSince = now
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
        if (next === undefined || ranksBefore(p, p.waitingSince || now, next, next.waitingSince || now))
          next = p
      }
      if (next === undefined) return
      this.unchoke(next, now)
    }
  }

  private async serve(peer: Peer): Promise<void> {
    peer.serving = true
    const q = peer.requests
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
      peer.serving = false
    }
  }
}

/**
 * Whether waiting peer a (waiting since sinceA) gets a slot before b: peers that never wasted
 * one first, then the ones the tracker handed out, then the longest waiting.
 */
function ranksBefore(a: Peer, sinceA: number, b: Peer, sinceB: number): boolean {
  const wa = a.wastedSince > 0
  if (wa !== b.wastedSince > 0) return !wa
  if (a.listed !== b.listed) return a.listed
  return sinceA < sinceB
}

function byRank(a: Peer, b: Peer): number {
  return ranksBefore(a, a.waitingSince, b, b.waitingSince)
    ? -1
    : ranksBefore(b, b.waitingSince, a, a.waitingSince)
      ? 1
      : 0
}

/** Idle slot holders, the first to lose their slot first: wasters, not listed, idle longest. */
function byWaste(a: Peer, b: Peer): number {
  const wa = a.lastRequestAt < a.unchokedAt
  if (wa !== b.lastRequestAt < b.unchokedAt) return wa ? -1 : 1
  if (a.listed !== b.listed) return a.listed ? 1 : -1
  return Math.max(a.unchokedAt, a.lastRequestAt) - Math.max(b.unchokedAt, b.lastRequestAt)
}
