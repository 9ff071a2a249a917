/**
 * Contracts between the BitTorrent engine and the parts around it: the store that holds a
 * torrent's bytes, and the tracker client that tells us about peers.
 */
import type { InfoHash } from '../core/index.js'
import type { Logger } from '../log/index.js'
import type { Registry } from '../metrics/index.js'

/** What a torrent's bytes live on. lib/store implements it; MemoryStorage is for tests. */
export interface TorrentStorage {
  readonly pieceCount: number
  /** true when piece i is present and verified */
  hasPiece(i: number): boolean
  /** read `length` bytes at `offset` inside piece i (only called for pieces we have) */
  readBlock(piece: number, offset: number, length: number): Promise<Buffer>
  /** store a whole piece whose SHA-1 the engine already verified; the storage persists its bitfield */
  writePiece(piece: number, data: Buffer): Promise<void>
}

export interface AnnounceRequest {
  infoHash: InfoHash
  peerId: Buffer
  port: number
  uploaded: number
  downloaded: number
  left: number
  event?: 'started' | 'completed' | 'stopped'
  numwant?: number
  signal?: AbortSignal
}
export interface AnnouncePeer {
  ip: string
  port: number
  peerId?: Buffer
}
export interface AnnounceResponse {
  /** seconds */
  interval: number
  peers: AnnouncePeer[]
}
/** Where peers come from: the tracker client implements it. */
export interface PeerSource {
  announce(req: AnnounceRequest): Promise<AnnounceResponse>
}

export interface EngineOptions {
  /** Decides the peer-id prefix: '-SO0001-' for origins, '-SA0001-' for agents. */
  role: 'origin' | 'agent'
  /** listen address, default '0.0.0.0' */
  host?: string
  /** peer port, 0 = ephemeral (tests) */
  port: number
  /** Address we are reachable at, if it differs from host (only used to recognise ourselves). */
  announceHost?: string
  peerSource: PeerSource
  logger: Logger
  /** prom-client registry for counters (bytes sent/received, bad pieces, bans) */
  registry?: Registry
  /** default 50 */
  maxConnectionsPerTorrent?: number
  /** outstanding 16 KiB block requests per peer, default 64 */
  pipelineDepth?: number
  /** Tunables mostly for tests; defaults in DEFAULTS. */
  requestTimeoutMs?: number
  handshakeTimeoutMs?: number
  banMs?: number
  uploadSlots?: number
}

export interface DownloadStats {
  bytesFromOrigins: number
  bytesFromAgents: number
  bytesUploaded: number
  piecesFromOrigins: number
  piecesFromAgents: number
  startedAt: number
  finishedAt?: number
}

export const BLOCK_SIZE = 16 << 10
/** Largest block we serve (BEP 3 clients use 16 KiB; 128 KiB is the common hard limit). */
export const MAX_SERVE_BLOCK = 128 << 10
/** Largest wire message we accept: a 1 MiB block plus the piece header, with slack. */
export const MAX_MESSAGE_LENGTH = (1 << 20) + 13

export const DEFAULTS = {
  maxConnectionsPerTorrent: 50,
  pipelineDepth: 64,
  requestTimeoutMs: 30_000,
  handshakeTimeoutMs: 10_000,
  /** A peer that sent a bad piece stays away this long. */
  banMs: 10 * 60_000,
  uploadSlots: 32,
  /** Incoming requests queued per peer before we call it abuse (we advertise reqq = 250). */
  maxPeerRequests: 500,
  /** Close a connection that sent nothing (not even a keep-alive) for this long. */
  idleTimeoutMs: 180_000,
  keepAliveMs: 60_000,
  tickMs: 1_000,
  /** Bounds for the tracker's interval; sooner while downloading and short of peers. */
  minAnnounceMs: 5_000,
  maxAnnounceMs: 30 * 60_000,
  hungryAnnounceMs: 3_000,
  /** Fewer connected peers than this while downloading counts as "short of peers". */
  hungryPeerCount: 8,
  randomFirstPieces: 4,
  /** Memory for pieces being assembled, per torrent. */
  maxActiveBytes: 256 << 20,
  stoppedAnnounceTimeoutMs: 2_000,
} as const

/** Peer ids start with '-SO' for origins; everything else is an agent or a foreign client. */
export type PeerClass = 'origin' | 'agent'

export function classifyPeerId(peerId: Uint8Array): PeerClass {
  return peerId[0] === 0x2d && peerId[1] === 0x53 && peerId[2] === 0x4f ? 'origin' : 'agent'
}
