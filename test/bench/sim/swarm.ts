/**
 * The simulated swarm: N agents and the origins, the tracker's own handout (lib/tracker's
 * Announcer over a MemoryPeerStore, on the simulated clock), dialling and connection limits as
 * PeerSet applies them, the torrent's once-a-second tick, and the figures of a run.
 *
 * Agents all ask for the blob at t = 0 (as the benchmark does); the origins seed from the start.
 * An agent announces 'started', dials the peers handed out (origins first) up to its connection
 * limit, announces again at the tracker's interval (every 3 s while it has fewer than 8 peers,
 * as the engine's announcer does), and 'completed' when it is done; agents keep seeding.
 */
import { type MetaInfo, pieceLengthFor } from '../../../lib/core/index.js'
import { MemoryPeerStore } from '../../../lib/tracker/peerstore/memory.js'
import { Announcer, OriginSet } from '../../../lib/tracker/server/handout.js'
import { SimEnd } from './end.js'
import { EventQueue, seededRandom, withRandom } from './events.js'
import { type HostSpec, type Net, SimHost } from './host.js'

export interface SimParams {
  /** Agents N. */
  agents: number
  /** Blob size S, bytes. */
  size: number
  /** Piece length; 0 = the engine's (pieceLengthFor). Larger pieces make a run cheaper, not the same. */
  pieceLength: number
  /** Agents' egress and ingress caps, bytes per second (Infinity: uncapped). */
  agentCap: number
  /** The origin's egress cap (and ingress), bytes per second. */
  originCap: number
  origins: number
  /** One-way latency between any two hosts (and to the tracker), ms. */
  latencyMs: number
  /** Each host's CPU ceiling: bytes per second it can send plus receive (Infinity: none). */
  cpuBytesPerSec: number
  numwant: number
  /** maxConnectionsPerTorrent, agents and origins. */
  maxConnections: number
  uploadSlots: number
  originUploadSlots: number
  originServeOnceMs: number
  /** The engine's blockSize offer (a capped host offers at most 1/32 s of its cap). */
  blockSize: number
  /** The tracker's announce interval, s. */
  announceIntervalS: number
  sendBufferBytes: number
  /** Stop when simulated time passes this many seconds (a run that does not finish). */
  limitS: number
  seed: number
}

export const DEFAULT_PARAMS: SimParams = {
  agents: 20,
  size: 128 << 20,
  pieceLength: 0,
  agentCap: 8 << 20,
  originCap: 8 << 20,
  origins: 1,
  latencyMs: 0.05,
  cpuBytesPerSec: Number.POSITIVE_INFINITY,
  numwant: 50,
  maxConnections: 50,
  uploadSlots: 32,
  originUploadSlots: 32,
  originServeOnceMs: 5_000,
  blockSize: 256 << 10,
  announceIntervalS: 30,
  sendBufferBytes: 1 << 20,
  limitS: 3_600,
  seed: 1,
}

export interface SimResult {
  params: SimParams
  pieceLength: number
  pieces: number
  /** S / B, s. */
  boundS: number
  /** S/B × (1 + log2(N)/pieces), s: the store-and-forward floor. */
  floorS: number
  /** Completion times of the agents that finished, s, sorted. */
  completionsS: number[]
  finished: number
  makespanOverBound: { p50: number; p99: number; max: number }
  /** Bytes the origins sent ÷ S. */
  originEgressCopies: number
  announces: number
  /** Highest number of announces the tracker received in one simulated second. */
  announcePeakPerS: number
  /** Announces per second over the makespan. */
  announceMeanPerS: number
  /** Simulated events, and the wall-clock time the run took. */
  events: number
  wallS: number
}

const TICK_MS = 1_000
const HUNGRY_PEERS = 8
const HUNGRY_ANNOUNCE_MS = 3_000
const MIN_ANNOUNCE_MS = 5_000
const INFO_HASH = 'ab'.repeat(20)

/** A capped host offers blocks of at most 1/32 s of its cap (the engine's rule), 16 KiB to blockSize. */
function blockOffer(cap: number, blockSize: number): number {
  let b = blockSize
  while (b > 16 << 10 && b > cap / 32) b /= 2
  return b
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
}

export class Swarm implements Net {
  readonly events = new EventQueue()
  readonly latencyMs: number
  readonly meta: MetaInfo
  readonly sendBufferBytes: number
  readonly p: SimParams
  readonly hosts: SimHost[] = []
  private readonly byIp = new Map<string, SimHost>()
  private readonly store: MemoryPeerStore
  private readonly tracker: Announcer
  private readonly announceSeconds = new Map<number, number>()
  private announces = 0
  private done = 0
  /** Each agent's announce schedule: a newer one replaces what was scheduled. */
  private readonly announceGen: number[] = []

  constructor(params: SimParams) {
    this.p = params
    this.latencyMs = params.latencyMs
    this.sendBufferBytes = params.sendBufferBytes
    const pieceLength = params.pieceLength > 0 ? params.pieceLength : pieceLengthFor(params.size)
    const pieceCount = Math.ceil(params.size / pieceLength)
    this.meta = {
      pieceCount,
      pieceLength,
      length: params.size,
      pieceSize: (i: number) =>
        i < pieceCount - 1 ? pieceLength : params.size - (pieceCount - 1) * pieceLength,
    } as unknown as MetaInfo
    const random = seededRandom(params.seed ^ 0x5eed)
    this.store = new MemoryPeerStore({ now: () => this.events.now, random, sweepIntervalMs: 0 })
    for (let i = 0; i < params.origins + params.agents; i++) {
      const origin = i < params.origins
      const cap = origin ? params.originCap : params.agentCap
      const spec: HostSpec = {
        id: i + 1,
        origin,
        egress: cap,
        ingress: cap,
        cpu: params.cpuBytesPerSec,
        uploadSlots: origin ? params.originUploadSlots : params.uploadSlots,
        maxConnections: params.maxConnections,
        serveOnceMs: params.originServeOnceMs,
        blockOffer: blockOffer(cap, params.blockSize),
      }
      const host = new SimHost(spec, this)
      this.hosts.push(host)
      this.byIp.set(host.ip, host)
      this.announceGen.push(0)
    }
    const origins = new OriginSet(this.hosts.filter((h) => h.origin).map((h) => ({ ip: h.ip, port: 6881 })))
    this.tracker = new Announcer(this.store, origins, 3 * params.announceIntervalS * 1000, { random })
  }

  async run(): Promise<SimResult> {
    const started = performance.now()
    await withRandom(seededRandom(this.p.seed), async () => {
      for (const h of this.hosts) this.announce(h, 'started')
      this.events.after(TICK_MS, () => this.tick())
      const limit = this.p.limitS * 1000
      for (;;) {
        const action = this.events.pop()
        if (action === undefined || this.events.now > limit) break
        const r = action()
        if (r !== undefined) await r
        if (this.done === this.p.agents) break
      }
    })
    await this.store.close()
    return this.result((performance.now() - started) / 1000)
  }

  private result(wallS: number): SimResult {
    const p = this.p
    const boundS = p.size / p.agentCap
    const completionsS = this.hosts
      .filter((h) => !h.origin && h.doneAt !== undefined)
      .map((h) => h.doneAt! / 1000)
      .sort((a, b) => a - b)
    const ratio = (q: number) => quantile(completionsS, q) / boundS
    const makespanS = completionsS.length === p.agents ? completionsS[completionsS.length - 1]! : p.limitS
    let originBytes = 0
    for (const h of this.hosts) if (h.origin) originBytes += h.bytesSent
    let peak = 0
    for (const [second, n] of this.announceSeconds)
      if (second * 1000 <= makespanS * 1000) peak = Math.max(peak, n)
    return {
      params: p,
      pieceLength: this.meta.pieceLength,
      pieces: this.meta.pieceCount,
      boundS,
      floorS: boundS * (1 + Math.log2(p.agents) / this.meta.pieceCount),
      completionsS,
      finished: completionsS.length,
      makespanOverBound: {
        p50: ratio(0.5),
        p99: ratio(0.99),
        max: completionsS.length === p.agents ? ratio(1) : Number.NaN,
      },
      originEgressCopies: originBytes / p.size,
      announces: this.announces,
      announcePeakPerS: peak,
      announceMeanPerS: this.announces / Math.max(makespanS, 1e-3),
      events: this.events.ran,
      wallS,
    }
  }

  // ----- tracker and connections -----

  private announce(host: SimHost, event: 'started' | 'completed' | undefined): void {
    if (host.origin && event !== 'started') return
    const gen = ++this.announceGen[host.id - 1]!
    const ev = this.events
    this.announces++
    const second = Math.floor(ev.now / 1000)
    this.announceSeconds.set(second, (this.announceSeconds.get(second) ?? 0) + 1)
    ev.after(this.latencyMs, async () => {
      const res = await this.tracker.announce({
        infoHashHex: INFO_HASH,
        peerIdHex: host.peerIdHex,
        ip: host.ip,
        socketIp: host.ip,
        port: 6881,
        left: host.complete ? 0 : this.meta.length,
        event: event ?? '',
        numwant: host.origin ? 0 : this.p.numwant,
      })
      ev.after(this.latencyMs, () => {
        if (host.origin) return
        this.onPeers(
          host,
          res.peers.map((r) => r.ip),
        )
        // The engine's announcer: the next one at the tracker's interval (at least 5 s), or in
        // 3 s when the torrent is downloading with fewer than 8 peers (dials in flight do not
        // count) right after this answer. A later announce ('completed') replaces the schedule.
        const regular = Math.max(MIN_ANNOUNCE_MS, this.p.announceIntervalS * 1000)
        const hungry = !host.complete && host.ends.size < HUNGRY_PEERS
        ev.after(hungry ? HUNGRY_ANNOUNCE_MS : regular, () => {
          if (this.announceGen[host.id - 1] === gen) this.announce(host, undefined)
        })
      })
    })
  }

  /**
   * Torrent.onPeers and PeerSet.toDial: a downloading host dials announced peers it is not
   * connected to or dialling, within the connection limit; seeds wait to be dialled.
   */
  private onPeers(host: SimHost, ips: string[]): void {
    if (host.complete) return
    for (const ip of ips) {
      if (host.ends.size + host.dialing.size >= host.spec.maxConnections) return
      const target = this.byIp.get(ip)
      if (target === undefined || target === host || host.ends.has(target.id) || host.dialing.has(target.id))
        continue
      host.dialing.add(target.id)
      // TCP connect and the BitTorrent handshake: a round trip and a half.
      this.events.after(3 * this.latencyMs, () => this.establish(host, target))
    }
  }

  /** PeerSet.add on both sides: a full torrent lets a peer go only if it does not use its connection. */
  private establish(a: SimHost, b: SimHost): void {
    a.dialing.delete(b.id)
    if (a.ends.has(b.id) || b.ends.has(a.id)) return
    if (a.complete && b.complete) return
    if (a.ends.size >= a.spec.maxConnections) return
    if (b.ends.size >= b.spec.maxConnections) {
      const victim = b.uploader.victim(b.peerIter, this.events.now) as unknown as SimEnd | undefined
      if (victim === undefined) return
      this.disconnect(b, victim.remote)
    }
    const block = Math.min(a.spec.blockOffer, b.spec.blockOffer, this.meta.pieceLength)
    const ea = new SimEnd(a, b, block)
    const eb = new SimEnd(b, a, block)
    ea.other = eb
    eb.other = ea
    a.attach(ea)
    b.attach(eb)
    a.afterPeerGained(ea)
    if (!ea.closed) b.afterPeerGained(eb)
  }

  disconnect(a: SimHost, b: SimHost): void {
    const ea = a.ends.get(b.id)
    const eb = b.ends.get(a.id)
    if (ea !== undefined) ea.closed = true
    if (eb !== undefined) eb.closed = true
    if (ea !== undefined) a.detach(ea)
    if (eb !== undefined) b.detach(eb)
  }

  // ----- what the hosts report -----

  onPiece(host: SimHost, index: number): void {
    // The haves, one batch per piece (the engine batches them with other traffic).
    this.events.after(this.latencyMs, () => {
      for (const end of host.ends.values()) {
        if (end.closed || end.down.bits?.complete) continue
        end.other.host.onHave(end.other, index)
      }
    })
  }

  onComplete(host: SimHost): void {
    this.done++
    this.announce(host, 'completed')
    // Both seeding: nothing left to trade on these connections.
    for (const end of [...host.ends.values()]) if (end.remote.complete) this.disconnect(host, end.remote)
  }

  /** The torrents' tick: choking (slot rotation, idle slots, serve-once's re-advertising). */
  private tick(): void {
    const now = this.events.now
    for (const h of this.hosts) {
      if (h.ends.size > 0) h.uploader.tick(h.peerIter, now, h.ends.size >= h.spec.maxConnections)
    }
    if (this.done < this.p.agents) this.events.after(TICK_MS, () => this.tick())
  }
}
