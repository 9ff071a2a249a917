/**
 * Where the tracker keeps who is in which swarm. In memory by default; Redis later (so several
 * trackers share one view). Every implementation must pass test/contract/peerstore.contract.ts.
 */

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
}

export interface SwarmCounts {
  /** Seeders, origins included. */
  complete: number
  incomplete: number
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
   * Adds or refreshes `peer` in the swarm of `infoHash` (40 hex) for `ttlMs`. The same peer id
   * replaces its earlier record; so does another peer id at the same ip:port (only one process
   * can listen there, so the old record is stale).
   */
  announce(infoHash: string, peer: PeerRecord, ttlMs: number): Promise<void>
  /** Removes a peer (event=stopped). Removing an unknown peer is not an error. */
  remove(infoHash: string, peerIdHex: string): Promise<void>
  /**
   * Up to `limit` live (unexpired) peers, best first: every origin, then seeders, then leechers,
   * each class a random sample when it does not fit. The caller shuffles and filters further.
   */
  peers(infoHash: string, limit: number): Promise<PeerRecord[]>
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
