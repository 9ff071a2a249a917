/**
 * One simulated host: the engine's own PiecePicker, Scheduler (request pipelines, endgame),
 * Uploader (choking, slots, request admission) and, on origins, ServeOnce, over modelled links.
 * What the engine does around them with sockets, storage and hashing, the Downloader's event
 * handlers and the Uploader's serve loop, is mirrored here in a few lines each (marked), so the
 * decisions are the engine's and only the plumbing is the simulator's.
 *
 * Links: the uplink sends one block at a time, rotating over the peers with queued requests
 * (the serve loops of all peers share one egress limiter), at the host's egress rate; the
 * receiver's downlink drains arriving bytes first come, first served at its ingress rate, so
 * a block arrives at max(sent + latency, downlink free). A sender skips a peer whose downlink
 * backlog exceeds a socket buffer (a full socket: the real loop awaits 'drain' and serves
 * others meanwhile). A per-host CPU ceiling, when set, is one more first-come server that every
 * block sent or received passes through.
 */
import type { MetaInfo } from '../../../lib/core/index.js'
import { silentLogger } from '../../../lib/log/index.js'
import { ownDownload, PeerDownload } from '../../../lib/torrent/download/peer-download.js'
import type { PieceBuffer } from '../../../lib/torrent/download/picker.js'
import { Scheduler } from '../../../lib/torrent/download/scheduler.js'
import type { EngineMetrics } from '../../../lib/torrent/engine/context.js'
import { Bitfield, PiecePicker } from '../../../lib/torrent/index.js'
import { PeerUpload } from '../../../lib/torrent/upload/peer-upload.js'
import { ServeOnce } from '../../../lib/torrent/upload/serve-once.js'
import { Uploader } from '../../../lib/torrent/upload/uploader.js'
import type { Peer } from '../../../lib/torrent/wire/peer.js'
import type { SimEnd } from './end.js'
import type { EventQueue } from './events.js'

/** What a host needs of the swarm around it. */
export interface Net {
  readonly events: EventQueue
  readonly latencyMs: number
  readonly meta: MetaInfo
  /** A peer's socket buffer: a sender skips a peer whose downlink backlog is larger. */
  readonly sendBufferBytes: number
  disconnect(a: SimHost, b: SimHost): void
  /** `host` verified piece `index` (the haves go out from here). */
  onPiece(host: SimHost, index: number): void
  onComplete(host: SimHost): void
}

export interface HostSpec {
  id: number
  origin: boolean
  /** Bytes per second; Infinity = uncapped. */
  egress: number
  ingress: number
  cpu: number
  uploadSlots: number
  maxConnections: number
  serveOnceMs: number
  /** The host's own block size offer (the smaller of two offers is used). */
  blockOffer: number
}

/** A piece message's framing, which the caps also pay for. */
const PIECE_HEADER = 13
const NOOP = { inc() {} }

/** Blocks carry no bytes here; the Scheduler only reads their length. */
const blocks = new Map<number, Buffer>()
function blockOf(length: number): Buffer {
  let b = blocks.get(length)
  if (b === undefined) {
    b = Buffer.alloc(length)
    blocks.set(length, b)
  }
  return b
}

export class SimHost {
  readonly spec: HostSpec
  readonly id: number
  readonly origin: boolean
  readonly ip: string
  readonly peerIdHex: string
  readonly net: Net
  readonly picker: PiecePicker
  readonly scheduler: Scheduler
  readonly uploader: Uploader
  readonly serveOnce: ServeOnce | undefined
  /** Connections by the remote host's id. */
  readonly ends = new Map<number, SimEnd>()
  /** The handshaken peers, walkable more than once (as PeerSet.values()). */
  readonly peerIter: Iterable<Peer> = { [Symbol.iterator]: () => this.peers() }
  /** Hosts being dialled. */
  readonly dialing = new Set<number>()
  doneAt: number | undefined
  bytesSent = 0
  private upFree = 0
  private inFree = 0
  private cpuFree = 0
  private sending = false
  private readonly ready: SimEnd[] = []
  private readyHead = 0

  constructor(spec: HostSpec, net: Net) {
    this.spec = spec
    this.id = spec.id
    this.origin = spec.origin
    this.ip = `10.${(spec.id >> 16) & 255}.${(spec.id >> 8) & 255}.${spec.id & 255}`
    this.peerIdHex = spec.id.toString(16).padStart(40, spec.origin ? 'e' : 'a')
    this.net = net
    const meta = net.meta
    this.picker = new PiecePicker(meta.pieceCount, { has: () => spec.origin })
    this.scheduler = new Scheduler(meta, this.picker, { payload: false })
    const clock = {
      now: () => net.events.now,
      setTimer: () => undefined,
      clearTimer: () => {},
      rearmTimer: () => undefined,
      setSoon: () => undefined,
      clearSoon: () => {},
    }
    this.serveOnce =
      spec.origin && spec.serveOnceMs > 0 && Number.isFinite(spec.egress)
        ? new ServeOnce(
            meta.pieceCount,
            spec.serveOnceMs,
            () => true,
            () => {},
          )
        : undefined
    this.uploader = new Uploader({
      meta,
      storage: undefined as never, // serving is the simulator's (pump), not the Uploader's
      blocks: undefined as never,
      have: this.picker.have,
      slots: spec.uploadSlots,
      optimisticUnchokeMs: 15_000,
      slotIdleMs: 5_000,
      idlePeerEvictMs: 30_000,
      metrics: { evicted: NOOP, sent: NOOP } as unknown as EngineMetrics,
      log: silentLogger(),
      serveOnce: this.serveOnce,
      clock,
    })
  }

  get complete(): boolean {
    return this.picker.complete
  }

  *peers(): Generator<Peer> {
    for (const e of this.ends.values()) yield e.peer
  }

  /** The torrent took a connection to `remote` (both ends are made by the swarm). */
  attach(end: SimEnd): void {
    const n = this.net.meta.pieceCount
    const bits = Bitfield.fromWire(n, end.remote.picker.have.buffer) ?? new Bitfield(n)
    end.down = new PeerDownload(bits)
    // Requests queued at us are bounded by the peer's pipeline (pipelineMaxBytes of blocks).
    end.up = new PeerUpload(Math.ceil((16 << 20) / end.blockSize) + 8, true)
    this.picker.peerHas(bits)
    end.down.interesting = bits.countNotIn(this.picker.have)
    this.ends.set(end.remote.id, end)
  }

  /** Mirrors the Downloader's onPeerClosed and the Uploader's onClosed. */
  detach(end: SimEnd): void {
    end.closed = true
    this.ends.delete(end.remote.id)
    const d = ownDownload(end.peer)
    if (d.bits !== undefined) this.picker.peerLost(d.bits)
    d.bits = undefined
    this.scheduler.releaseAll(end.peer, false)
    this.uploader.onClosed(end.peer, this.peerIter, this.net.events.now)
    this.fillAll()
  }

  // ----- the Downloader's handlers, mirrored (lib/torrent/download/downloader.ts) -----

  afterPeerGained(end: SimEnd): void {
    if (this.complete && end.down.bits!.complete) {
      end.close('both seeding')
      return
    }
    this.updateInterest(end)
    this.scheduler.fill(end.peer, this.net.events.now)
  }

  onHave(end: SimEnd, index: number): void {
    const d = ownDownload(end.peer)
    if (!d.bits!.set(index)) return
    this.picker.peerHasPiece(index)
    if (!this.picker.have.has(index)) d.interesting++
    this.afterPeerGained(end)
  }

  onUnchoke(end: SimEnd): void {
    ownDownload(end.peer).peerChoking = false
    this.scheduler.fill(end.peer, this.net.events.now)
  }

  onReject(end: SimEnd, index: number, offset: number): void {
    if (!this.scheduler.onReject(end.peer, index, offset)) return
    const d = ownDownload(end.peer)
    if (!d.peerChoking && d.bits!.clear(index)) {
      this.picker.peerLostPiece(index)
      if (!this.picker.have.has(index)) d.interesting--
      this.updateInterest(end)
    }
    this.fillAll()
  }

  onBlock(end: SimEnd, index: number, offset: number, length: number): void {
    const now = this.net.events.now
    const r = this.scheduler.onBlock(end.peer, index, offset, blockOf(length), now)
    if (r.kind === 'invalid') throw new Error(`simulator bug: ${r.why}`)
    if (r.kind === 'unrequested') return
    if (r.kind === 'accepted' && r.piece !== undefined) this.store(r.piece)
    this.scheduler.refill(end.peer, now)
  }

  /** Verified and written at once (the CPU ceiling stands for hashing and writing). */
  private store(piece: PieceBuffer<Peer>): void {
    this.scheduler.settle(piece, true)
    const i = piece.index
    if (!this.picker.markHave(i)) return
    for (const end of this.ends.values()) {
      const d = end.down
      if (d.bits?.has(i) && --ownDownload(end.peer).interesting === 0) this.updateInterest(end)
    }
    this.net.onPiece(this, i)
    if (this.picker.complete) {
      this.doneAt = this.net.events.now
      this.scheduler.dropSpares()
      this.net.onComplete(this)
    }
  }

  private updateInterest(end: SimEnd): void {
    if (end.down.interesting > 0 && !this.complete) end.interested()
    else end.uninterested()
  }

  fillAll(): void {
    if (!this.complete) this.scheduler.fillAll(this.peerIter, this.net.events.now)
  }

  // ----- the Uploader's serve loop, as links -----

  onRequest(end: SimEnd, index: number, offset: number, length: number): void {
    ownUpload(end).lastRequestAt = end.lastRecvAt
    if (this.uploader.queueRequest(end.peer, index, offset, length)) this.markReady(end)
  }

  private markReady(end: SimEnd): void {
    if (!end.inReady) {
      end.inReady = true
      this.ready.push(end)
    }
    if (!this.sending) this.pump()
  }

  /** The uplink is free: sends the next block in the rotation, if any. */
  private pump(): void {
    const ev = this.net.events
    const now = ev.now
    let skipped = 0
    let wakeAt = Number.POSITIVE_INFINITY
    while (this.readyHead < this.ready.length) {
      const end = this.ready[this.readyHead++]!
      if (this.readyHead > 1024 && this.readyHead * 2 > this.ready.length) {
        this.ready.splice(0, this.readyHead)
        this.readyHead = 0
      }
      end.inReady = false
      const q = end.up.requests
      if (end.closed || end.amChoking || q.size === 0) continue
      const r = end.remote
      const backlog = Number.isFinite(r.spec.ingress) ? ((r.inFree - now) / 1000) * r.spec.ingress : 0
      // (A byte of slack: the wake-up time below is computed in floating point.)
      if (backlog > this.net.sendBufferBytes + 1) {
        end.inReady = true
        this.ready.push(end)
        wakeAt = Math.min(wakeAt, r.inFree - (this.net.sendBufferBytes / r.spec.ingress) * 1000)
        if (++skipped >= this.ready.length - this.readyHead) break
        continue
      }
      if (!q.shift()) continue
      this.transmit(end, q.index, q.offset, q.length)
      if (q.size > 0) {
        end.inReady = true
        this.ready.push(end)
      }
      return
    }
    this.sending = false
    if (Number.isFinite(wakeAt)) {
      this.sending = true
      ev.at(Math.max(now + 1e-3, wakeAt), () => this.pump())
    }
  }

  private transmit(end: SimEnd, index: number, offset: number, length: number): void {
    const ev = this.net.events
    const now = ev.now
    const s = this.spec
    const bytes = length + PIECE_HEADER
    this.serveOnce?.sent(end.peer, index, now)
    this.bytesSent += length
    let sent = Math.max(now, this.upFree) + (bytes / s.egress) * 1000
    if (Number.isFinite(s.cpu)) {
      this.cpuFree = Math.max(now, this.cpuFree) + (length / s.cpu) * 1000
      sent = Math.max(sent, this.cpuFree)
    }
    this.upFree = sent
    this.sending = true
    ev.at(sent, () => this.pump())
    const r = end.remote
    const lat = this.net.latencyMs
    r.inFree = Math.max(now + lat, r.inFree) + (bytes / r.spec.ingress) * 1000
    const arrives = Math.max(sent + lat, r.inFree)
    const other = end.other
    ev.at(arrives, () => {
      if (other.closed) return
      if (!Number.isFinite(r.spec.cpu)) return r.onBlock(other, index, offset, length)
      r.cpuFree = Math.max(ev.now, r.cpuFree) + (length / r.spec.cpu) * 1000
      ev.at(r.cpuFree, () => {
        if (!other.closed) r.onBlock(other, index, offset, length)
      })
    })
  }
}

function ownUpload(end: SimEnd): PeerUpload {
  return end.up
}
