/**
 * Shoal's ordered handout: origins first, then seeders, then leechers, shuffled within each
 * class so load spreads, capped at numwant, never the announcing peer itself. Origin status comes
 * only from the tracker's configuration, matched against the address the announce came from.
 */
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import type { Logger } from '../../log/index.js'
import { splitHostPort } from '../config.js'
import { addressKey, type PeerRecord, type PeerStore, peerClass } from '../peerstore/types.js'
import { type AnnounceEvent, normaliseIp } from './announce.js'

/** The configured origin peer addresses, as ip:port keys. */
export class OriginSet {
  private readonly keys: Set<string>
  private readonly ips: Set<string>

  constructor(addresses: Iterable<{ ip: string; port: number }> = []) {
    this.keys = new Set()
    this.ips = new Set()
    for (const a of addresses) {
      const ip = normaliseIp(a.ip)
      if (ip) {
        this.keys.add(addressKey(ip, a.port))
        this.ips.add(ip)
      }
    }
  }

  /** Whether an origin announces from this address (any port): its announces are not rate limited. */
  hasIp(ip: string | undefined): boolean {
    if (!ip || this.ips.size === 0) return false
    const n = normaliseIp(ip)
    return n !== undefined && this.ips.has(n)
  }

  /**
   * Resolves `host:port` entries once (a name may stand for several addresses). A name that does
   * not resolve is logged and skipped: that origin is then handed out as an ordinary peer.
   */
  static async resolve(entries: readonly string[], logger?: Logger): Promise<OriginSet> {
    const out: Array<{ ip: string; port: number }> = []
    for (const entry of entries) {
      const { host, port } = splitHostPort(entry)
      if (isIP(host)) {
        out.push({ ip: host, port })
        continue
      }
      try {
        for (const a of await lookup(host, { all: true })) out.push({ ip: a.address, port })
      } catch (err) {
        logger?.warn(
          { origin: entry, err: (err as Error).message },
          'cannot resolve origin peer address; it will not be handed out first',
        )
      }
    }
    return new OriginSet(out)
  }

  has(ip: string, port: number): boolean {
    return this.keys.has(addressKey(ip, port))
  }

  get size(): number {
    return this.keys.size
  }
}

export interface Self {
  peerIdHex: string
  ip: string
  port: number
  /** The announcing peer's zone: peers of the same zone go first within each class. */
  zone?: string
}

/**
 * Orders candidates: class by class (origin, seeder, leecher), inside each class the peers of
 * the announcing peer's zone first (when it declared one), a fresh shuffle inside each group,
 * the announcing peer removed by id and by ip:port, then the first `numwant`.
 */
export function orderPeers(
  candidates: readonly PeerRecord[],
  self: Self,
  numwant: number,
  random: () => number = Math.random,
): PeerRecord[] {
  // Six groups: (origin, seeder, leecher) × (same zone, other); created when first needed.
  const groups: Array<PeerRecord[] | undefined> = [
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
  ]
  for (const p of candidates) {
    if (p.peerId === self.peerIdHex || (p.port === self.port && p.ip === self.ip)) continue
    const near = self.zone !== undefined && p.zone === self.zone
    const g = peerClass(p) * 2 + (near ? 0 : 1)
    const list = groups[g]
    if (list === undefined) groups[g] = [p]
    else list.push(p)
  }
  const out: PeerRecord[] = []
  for (const list of groups) {
    if (list === undefined) continue
    shuffle(list, random)
    for (const p of list) {
      if (out.length >= numwant) return out
      out.push(p)
    }
  }
  return out
}

function shuffle<T>(list: T[], random: () => number): void {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const tmp = list[i] as T
    list[i] = list[j] as T
    list[j] = tmp
  }
}

export interface AnnounceInput {
  infoHashHex: string
  peerIdHex: string
  ip: string
  socketIp: string
  port: number
  left: number | undefined
  event: AnnounceEvent
  numwant: number
  zone?: string
}

export interface AnnounceOutcome {
  peers: PeerRecord[]
  complete: number
  incomplete: number
}

/** Applies one parsed announce to the store and picks the peers to hand back. */
export class Announcer {
  private readonly random: () => number
  /** An origin its health checks find down is not handed out (it stays in the store until it expires). */
  private readonly originDown: ((ip: string, port: number) => boolean) | undefined

  constructor(
    private readonly store: PeerStore,
    private readonly origins: OriginSet,
    private readonly ttlMs: number,
    opts: { random?: () => number; originDown?: (ip: string, port: number) => boolean } = {},
  ) {
    this.random = opts.random ?? Math.random
    this.originDown = opts.originDown
  }

  async announce(req: AnnounceInput): Promise<AnnounceOutcome> {
    if (req.event === 'stopped') {
      // Only the record this address announced: a stop carrying someone else's peer id from
      // another address removes nothing of theirs.
      await this.store.remove(req.infoHashHex, req.peerIdHex, req.ip)
      return { peers: [], ...(await this.store.counts(req.infoHashHex)) }
    }
    const record: PeerRecord = {
      peerId: req.peerIdHex,
      ip: req.ip,
      port: req.port,
      complete: req.left === 0 || req.event === 'completed',
      // The socket address, not the claimed `ip`: a peer cannot talk its way into the origin class.
      origin: this.origins.has(req.socketIp, req.port),
      ...(req.zone === undefined ? {} : { zone: req.zone }),
    }
    // One round trip: store, sample and count together. One extra peer: the sample may hold the
    // announcing peer itself, which is filtered out.
    const limit = req.numwant > 0 ? req.numwant + 1 : 0
    const { peers: sampled, counts } = await this.store.exchange(req.infoHashHex, record, this.ttlMs, limit)
    let candidates = sampled
    const down = this.originDown
    if (down) candidates = candidates.filter((p) => !(p.origin && down(p.ip, p.port)))
    const peers = orderPeers(
      candidates,
      { peerIdHex: req.peerIdHex, ip: req.ip, port: req.port, zone: req.zone },
      req.numwant,
      this.random,
    )
    return { peers, ...counts }
  }
}
