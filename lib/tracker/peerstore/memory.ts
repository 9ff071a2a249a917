/**
 * In-memory peer store. Every swarm keeps its peers in three class arrays (origins, seeders,
 * leechers) so a handout samples the best classes first in O(numwant), never scanning the swarm.
 * Memory is bounded twice: per infohash and overall, always evicting the peer that announced
 * longest ago, so a flood of fake peer ids or infohashes costs old entries, not the process.
 */
import { ShoalError } from '../../errors/index.js'
import {
  addressKey,
  checkInfoHash,
  checkPeerRecord,
  type Exchange,
  type PeerClass,
  type PeerRecord,
  type PeerStore,
  type PeerStoreStats,
  peerClass,
  type SwarmCounts,
} from './types.js'

export interface MemoryPeerStoreOptions {
  maxPeersPerInfoHash?: number
  maxPeers?: number
  /** How often expired peers are swept out (ms); reads also skip them, so this only frees memory. */
  sweepIntervalMs?: number
  /** Clock, for tests. */
  now?: () => number
  /** Random in [0, 1), for tests. */
  random?: () => number
}

interface Entry {
  infoHash: string
  record: PeerRecord
  /** peerKey(peerId, ip): a record belongs to a peer id *and* the address it announced from. */
  key: string
  addr: string
  expiresAt: number
  cls: PeerClass
  /** Position in its swarm's class array (kept in step by swap-removal). */
  idx: number
  /** Position in its zone's class array, when the peer declared a zone. */
  zidx: number
}

interface Swarm {
  /** By peerKey(peerId, ip). Insertion order = announce order: the first entry is the stalest. */
  byPeer: Map<string, Entry>
  byAddr: Map<string, Entry>
  classes: [Entry[], Entry[], Entry[]]
  /** The same entries again by declared zone, so a zone's peers are sampled without a scan. */
  zones: Map<string, [Entry[], Entry[], Entry[]]>
}

export class MemoryPeerStore implements PeerStore {
  readonly kind = 'memory'
  private readonly swarms = new Map<string, Swarm>()
  /** Every entry over all swarms, in announce order, for the global bound and the sweep. */
  private readonly all = new Map<Entry, true>()
  private readonly maxPerInfoHash: number
  private readonly maxPeers: number
  private readonly now: () => number
  private readonly random: () => number
  private timer: NodeJS.Timeout | undefined
  private closed = false

  constructor(opts: MemoryPeerStoreOptions = {}) {
    this.maxPerInfoHash = opts.maxPeersPerInfoHash ?? 5000
    this.maxPeers = opts.maxPeers ?? 200_000
    this.now = opts.now ?? Date.now
    this.random = opts.random ?? Math.random
    const every = opts.sweepIntervalMs ?? 10_000
    if (every > 0) {
      this.timer = setInterval(() => this.sweep(), every)
      this.timer.unref()
    }
  }

  async announce(infoHash: string, peer: PeerRecord, ttlMs: number): Promise<void> {
    this.store(infoHash, peer, ttlMs)
  }

  private store(infoHash: string, peer: PeerRecord, ttlMs: number): void {
    this.checkOpen()
    checkInfoHash(infoHash)
    checkPeerRecord(peer)
    if (!(ttlMs > 0)) throw new ShoalError('BAD_REQUEST', 'peer ttl must be positive')
    let swarm = this.swarms.get(infoHash)
    if (!swarm) {
      swarm = { byPeer: new Map(), byAddr: new Map(), classes: [[], [], []], zones: new Map() }
      this.swarms.set(infoHash, swarm)
    }
    const addr = addressKey(peer.ip, peer.port)
    // Only the record of this peer id *at this ip* is replaced: the same id announced from
    // another ip (a forger who read it from a non-compact response) becomes a separate record,
    // so it can neither overwrite nor, with event=stopped, remove the genuine one.
    const key = peerKey(peer.peerId, peer.ip)
    const previous = swarm.byPeer.get(key)
    if (previous && this.refresh(swarm, previous, peer, addr, ttlMs)) return
    if (previous) this.detach(swarm, previous)
    const sameAddr = swarm.byAddr.get(addr)
    if (sameAddr) this.detach(swarm, sameAddr)
    const record: PeerRecord = {
      peerId: peer.peerId,
      ip: peer.ip,
      port: peer.port,
      complete: peer.complete,
      origin: peer.origin,
      ...(peer.zone === undefined ? {} : { zone: peer.zone }),
    }
    const entry: Entry = {
      infoHash,
      record,
      key,
      addr,
      expiresAt: this.now() + ttlMs,
      cls: peerClass(record),
      idx: 0,
      zidx: 0,
    }
    const list = swarm.classes[entry.cls]
    entry.idx = list.length
    list.push(entry)
    if (record.zone !== undefined) {
      let zoned = swarm.zones.get(record.zone)
      if (!zoned) {
        zoned = [[], [], []]
        swarm.zones.set(record.zone, zoned)
      }
      entry.zidx = zoned[entry.cls].length
      zoned[entry.cls].push(entry)
    }
    swarm.byPeer.set(key, entry)
    swarm.byAddr.set(addr, entry)
    if (!this.swarms.has(infoHash)) this.swarms.set(infoHash, swarm) // detach may have dropped an emptied swarm
    this.all.set(entry, true)
    while (swarm.byPeer.size > this.maxPerInfoHash) this.detach(swarm, first(swarm.byPeer.values()) as Entry)
    while (this.all.size > this.maxPeers) {
      const oldest = first(this.all.keys()) as Entry
      this.detach(this.swarms.get(oldest.infoHash) as Swarm, oldest)
    }
  }

  /**
   * A regular re-announce (same peer, address, class and zone, the common case by far) only
   * moves the entry to the fresh end with a new expiry: no arrays touched, nothing allocated.
   */
  private refresh(swarm: Swarm, entry: Entry, peer: PeerRecord, addr: string, ttlMs: number): boolean {
    const r = entry.record
    if (entry.addr !== addr || r.zone !== peer.zone || entry.cls !== peerClass(peer)) return false
    if (r.complete !== peer.complete || r.origin !== peer.origin) return false
    entry.expiresAt = this.now() + ttlMs
    // Insertion order is announce order (the stale end is swept first): move it to the end.
    swarm.byPeer.delete(entry.key)
    swarm.byPeer.set(entry.key, entry)
    this.all.delete(entry)
    this.all.set(entry, true)
    return true
  }

  // One synchronous step: each await of the separate calls cost a turn of the microtask queue.
  async exchange(infoHash: string, peer: PeerRecord, ttlMs: number, limit: number): Promise<Exchange> {
    this.store(infoHash, peer, ttlMs)
    return { peers: this.sample(infoHash, limit, peer.zone), counts: this.count(infoHash) }
  }

  async remove(infoHash: string, peerIdHex: string, ip: string): Promise<void> {
    this.checkOpen()
    const swarm = this.swarms.get(infoHash)
    const entry = swarm?.byPeer.get(peerKey(peerIdHex, ip))
    if (swarm && entry) this.detach(swarm, entry)
  }

  async peers(infoHash: string, limit: number, zone?: string): Promise<PeerRecord[]> {
    return this.sample(infoHash, limit, zone)
  }

  private sample(infoHash: string, limit: number, zone: string | undefined): PeerRecord[] {
    this.checkOpen()
    const swarm = this.live(infoHash)
    const out: PeerRecord[] = []
    if (!swarm || limit <= 0) return out
    const now = this.now()
    const zoned = zone === undefined ? undefined : swarm.zones.get(zone)
    for (let cls = 0; cls < 3 && out.length < limit; cls++) {
      const local = zoned?.[cls]
      // The zone's own peers first. When they do not all fit, the class is full and the rest is
      // not looked at; when they do, every one of them is taken and skipped below, at most
      // local.length extra steps.
      if (local) this.sampleInto(local, 'zidx', limit, now, out)
      this.sampleInto(swarm.classes[cls] as Entry[], 'idx', limit, now, out, local ? zone : undefined)
    }
    return out
  }

  /**
   * Partial Fisher-Yates: the first k slots become a uniform sample; order inside a list is
   * meaningless, so shuffling the array in place costs nothing (positions kept in `pos`).
   */
  private sampleInto(
    list: Entry[],
    pos: 'idx' | 'zidx',
    limit: number,
    now: number,
    out: PeerRecord[],
    skipZone?: string,
  ): void {
    for (let i = 0; i < list.length && out.length < limit; i++) {
      const j = i + Math.floor(this.random() * (list.length - i))
      const picked = list[j] as Entry
      if (j !== i) {
        const here = list[i] as Entry
        list[i] = picked
        list[j] = here
        picked[pos] = i
        here[pos] = j
      }
      if (picked.expiresAt > now && (skipZone === undefined || picked.record.zone !== skipZone))
        out.push({ ...picked.record })
    }
  }

  async counts(infoHash: string): Promise<SwarmCounts> {
    return this.count(infoHash)
  }

  private count(infoHash: string): SwarmCounts {
    this.checkOpen()
    const swarm = this.live(infoHash)
    if (!swarm) return { complete: 0, incomplete: 0 }
    return {
      complete: swarm.classes[0].length + swarm.classes[1].length,
      incomplete: swarm.classes[2].length,
    }
  }

  async stats(): Promise<PeerStoreStats> {
    this.checkOpen()
    const stats = { swarms: this.swarms.size, origins: 0, seeders: 0, leechers: 0 }
    for (const swarm of this.swarms.values()) {
      stats.origins += swarm.classes[0].length
      stats.seeders += swarm.classes[1].length
      stats.leechers += swarm.classes[2].length
    }
    return stats
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    this.swarms.clear()
    this.all.clear()
  }

  /** Drops expired peers from the stale end of the swarm and returns it (undefined when empty). */
  private live(infoHash: string): Swarm | undefined {
    const swarm = this.swarms.get(infoHash)
    if (!swarm) return undefined
    const now = this.now()
    for (const entry of swarm.byPeer.values()) {
      if (entry.expiresAt > now) break
      this.detach(swarm, entry)
    }
    return this.swarms.get(infoHash)
  }

  /** Full pass: with mixed TTLs the announce order is not the expiry order, so scan everything. */
  private sweep(): void {
    const now = this.now()
    for (const entry of this.all.keys()) {
      if (entry.expiresAt <= now) this.detach(this.swarms.get(entry.infoHash) as Swarm, entry)
    }
  }

  private detach(swarm: Swarm, entry: Entry): void {
    const list = swarm.classes[entry.cls]
    const last = list.pop() as Entry
    if (last !== entry) {
      list[entry.idx] = last
      last.idx = entry.idx
    }
    const zone = entry.record.zone
    const zoned = zone === undefined ? undefined : swarm.zones.get(zone)
    if (zone !== undefined && zoned) {
      const zlist = zoned[entry.cls]
      const zlast = zlist.pop() as Entry
      if (zlast !== entry) {
        zlist[entry.zidx] = zlast
        zlast.zidx = entry.zidx
      }
      if (zoned[0].length + zoned[1].length + zoned[2].length === 0) swarm.zones.delete(zone)
    }
    if (swarm.byPeer.get(entry.key) === entry) swarm.byPeer.delete(entry.key)
    if (swarm.byAddr.get(entry.addr) === entry) swarm.byAddr.delete(entry.addr)
    this.all.delete(entry)
    if (swarm.byPeer.size === 0) this.swarms.delete(entry.infoHash)
  }

  private checkOpen(): void {
    if (this.closed)
      throw new ShoalError('UNAVAILABLE', 'the peer store is closed (the tracker is shutting down)')
  }
}

/** A record's identity: the peer id and the ip it announced from (a space never occurs in either). */
function peerKey(peerIdHex: string, ip: string): string {
  return `${peerIdHex} ${ip}`
}

function first<T>(items: IterableIterator<T>): T | undefined {
  return items.next().value
}
