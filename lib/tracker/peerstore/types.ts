/**
 * Where the tracker keeps who is in which swarm. In memory by default; in Redis when several
 * trackers share one view (peerStore.type 'redis'). Every implementation must pass test/contract/peerstore.contract.ts.
 */
import { ShoalError } from '../../errors/index.js'

export interface PeerRecord {
  /** 20-byte BitTorrent peer id, as 40 lowercase hex characters. */
  peerId: string
  /** IPv4 or IPv6 literal (IPv4-mapped IPv6 already unwrapped). */
  ip: string
  port: number
  /** left = 0 or event=completed: a seeder. */
  complete: boolean
  /**
   * An origin of the cluster. Set by the tracker from its configuration (never from what the peer
   * claims); stored so a store can hand origins out first without knowing the configuration.
   */
  origin: boolean
  /**
   * The zone (rack, site) the peer declared on its announce, when it did: handouts to a peer of
   * a zone put that zone's peers first within each class. Letters, digits and . _ - (ZONE).
   */
  zone?: string
}

/** What a zone label may be: short, and free of the separators stores use. */
export const ZONE = /^[A-Za-z0-9._-]{1,64}$/

export interface SwarmCounts {
  /** Seeders, origins included. */
  complete: number
  incomplete: number
}

export interface Exchange {
  peers: PeerRecord[]
  counts: SwarmCounts
}

export interface PeerStoreStats {
  swarms: number
  origins: number
  seeders: number
  leechers: number
}

export interface PeerStore {
  readonly kind: string
  /**
   * Adds or refreshes `peer` in the swarm of `infoHash` (40 hex) for `ttlMs`.
   *
   * A record is identified by its (peer id, ip) pair, never by the peer id alone: peer ids are
   * chosen by the peer and shown to everyone in non-compact responses, so an announce carrying
   * another host's peer id must not overwrite (or evict) that host's record. The same peer id
   * from a different ip is therefore a separate peer with its own record; the same peer id from
   * the same ip replaces its earlier record. Another peer id at the same ip:port also replaces
   * the old record (only one process can listen there, so the old record is stale).
   */
  announce(infoHash: string, peer: PeerRecord, ttlMs: number): Promise<void>
  /**
   * announce, then peers(infoHash, limit, peer.zone) and counts(infoHash), as one step: the tracker's
   * announce path, one round trip for a remote store. `limit` 0 samples nothing.
   */
  exchange(infoHash: string, peer: PeerRecord, ttlMs: number, limit: number): Promise<Exchange>
  /**
   * Removes the peer (event=stopped) with this peer id at this ip; a record of the same peer id
   * at another ip stays. Removing an unknown peer is not an error.
   */
  remove(infoHash: string, peerIdHex: string, ip: string): Promise<void>
  /**
   * Up to `limit` live (unexpired) peers, best first: every origin, then seeders, then leechers,
   * each class a random sample when it does not fit. The caller shuffles and filters further.
   * With `zone`, the peers of that zone come first within each class (sampled first).
   */
  peers(infoHash: string, limit: number, zone?: string): Promise<PeerRecord[]>
  /** Live seeders and leechers of a swarm. */
  counts(infoHash: string): Promise<SwarmCounts>
  /** Totals over all swarms, for the metrics page. */
  stats(): Promise<PeerStoreStats>
  /** Releases timers and connections. Idempotent. */
  close(): Promise<void>
}

/** 0 = origin, 1 = seeder, 2 = leecher: the order peers are handed out in. */
export type PeerClass = 0 | 1 | 2

export function peerClass(p: Pick<PeerRecord, 'origin' | 'complete'>): PeerClass {
  return p.origin ? 0 : p.complete ? 1 : 2
}

export function addressKey(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`
}

const HEX40 = /^[0-9a-f]{40}$/

/** The checks every store makes on its arguments (hostile input never reaches storage). */
export function checkInfoHash(infoHash: string): void {
  if (!HEX40.test(infoHash))
    throw new ShoalError('BAD_REQUEST', 'infohash must be 40 lowercase hex characters')
}

export function checkZone(zone: string | undefined): void {
  if (zone !== undefined && !ZONE.test(zone))
    throw new ShoalError('BAD_REQUEST', 'zone must be 1-64 letters, digits, dots, dashes or underscores')
}

/** Peer id (40 hex), port and zone of a record to store. */
export function checkPeerRecord(peer: PeerRecord): void {
  if (!HEX40.test(peer.peerId))
    throw new ShoalError('BAD_REQUEST', 'peer id must be 40 lowercase hex characters')
  if (!Number.isInteger(peer.port) || peer.port < 1 || peer.port > 65535)
    throw new ShoalError('BAD_REQUEST', `invalid peer port ${peer.port}`)
  checkZone(peer.zone)
}
