/**
 * What a Torrent (and its PeerSet, Downloader, Uploader) needs from the engine that owns it.
 * EngineCore implements it; an interface rather than that class, so torrent.ts does not
 * import the engine (and tests could drive a Torrent directly), and so none of it has to be
 * on TorrentEngine, whose surface is the public API only.
 */
import type { Clock, HostBandwidth } from '../../bandwidth/index.js'
import type { Logger } from '../../log/index.js'
import type { Counter, Gauge } from '../../metrics/index.js'
import type { ResolvedOptions } from '../tuning.js'
import type { PeerClass, PeerSource } from '../types.js'
import type { BlockPool } from '../upload/block-pool.js'
import type { Peer } from '../wire/peer.js'
import type { Torrent } from './torrent.js'

export type { ResolvedOptions }

/** Which limit an incoming connection hit (docs/robustness.md). */
export type RefusalReason = 'host_connections' | 'host_pending' | 'address_connections' | 'address_pending'

export interface EngineMetrics {
  sent: Counter
  received: Counter
  /** `received` by source class, resolved once so the per-block path does no label lookup. */
  receivedFrom: Record<PeerClass, { inc(n: number): void }>
  verified: Counter
  badPieces: Counter
  bans: Counter
  stalls: Counter
  /** Requests refused by ServeOnce (upload/serve-once.ts). */
  refused: Counter
  /** Incoming connections refused at accept, by the limit they hit. */
  connectionsRefused: Record<RefusalReason, { inc(): void }>
  /** Peers closed to free a slot or a connection (they asked for nothing with theirs). */
  evicted: Counter
  peers: Gauge
}

export interface EngineContext {
  readonly peerId: Buffer
  readonly port: number
  /** This host's zone (EngineOptions.zone), sent in our BEP 10 handshake. */
  readonly zone: string | undefined
  readonly logger: Logger
  readonly options: ResolvedOptions
  readonly metrics: EngineMetrics
  readonly peerSource: PeerSource
  /** Buffers for blocks being uploaded, shared by every torrent (upload/block-pool.ts). */
  readonly blocks: BlockPool
  /** The host's caps (EngineOptions.bandwidth); undefined = unlimited. */
  readonly bandwidth: HostBandwidth | undefined
  /** Time for every timer and timeout of the engine (EngineOptions.clock). */
  readonly clock: Clock
  /** Opens an outgoing connection for the torrent and sends our handshake. */
  dial(torrent: Torrent, ip: string, port: number): Peer
  /**
   * Blacklists the peer (id, dialled address, IP for incoming connections) from one torrent
   * for `ms` (banMs).
   */
  ban(infoHashHex: string, peer: Peer, reason: string, ms?: number): void
  /** Below the engine-wide connection limit (maxConnections): a dial may be opened. */
  canConnect(): boolean
  /** Whether `key` (a peer id in hex or an "ip:port" address) is banned from the torrent. */
  isBanned(infoHashHex: string, key: string): boolean
  isSelf(ip: string, port: number): boolean
  removeTorrent(torrent: Torrent, reason: string): void
}
