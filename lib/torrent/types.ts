/**
 * Contracts between the BitTorrent engine and the parts around it: the store that holds a
 * torrent's bytes, and the tracker client that tells us about peers.
 */
import type { Clock, HostBandwidth } from '../bandwidth/index.js'
import type { InfoHash } from '../core/index.js'
import type { Logger } from '../log/index.js'
import type { Registry } from '../metrics/index.js'
import { type EngineTuning, TUNING_DEFAULTS } from './tuning.js'

export type { TorrentStorage } from './storage.js'
export { BLOCK_SIZE, type EngineTuning, MAX_BLOCK_SIZE, validBlockSize } from './tuning.js'

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

export interface EngineOptions extends EngineTuning {
  /** Decides the peer-id prefix: '-SO0001-' for origins, '-SA0001-' for agents. */
  role: 'origin' | 'agent'
  /** listen address, default '0.0.0.0' */
  host?: string
  /** peer port, 0 = ephemeral (tests) */
  port: number
  /** Address we are reachable at, if it differs from host (only used to recognise ourselves). */
  announceHost?: string
  /**
   * This host's zone (rack, site), told to every peer in our BEP 10 handshake so that each side
   * can count the bytes it receives by the sender's zone (DownloadStats.bytesByZone). A label
   * only: it changes nothing in how peers are chosen (the tracker's handout does that).
   */
  zone?: string
  peerSource: PeerSource
  logger: Logger
  /** prom-client registry for counters (bytes sent/received, bad pieces, bans) */
  registry?: Registry
  /**
   * The host's caps, shared with nothing else on the host that moves peer traffic: piece data
   * sent waits for egress, reads pause the socket while ingress is over; each torrent is a
   * group (its infohash), so concurrent torrents share fairly. Absent = unlimited, no cost.
   * The caller owns it (creates and closes it; rates may change at run time).
   */
  bandwidth?: HostBandwidth
  /**
   * What the engine's timers and timeouts run on: connection phases, have batching, the
   * once-a-second tick (request timeouts, choking, idle eviction), bans and serve-once. Default
   * the real, monotonic clock (lib/bandwidth's systemClock); tests pass a ManualClock. Download
   * stats (startedAt, finishedAt) stay wall-clock timestamps.
   */
  clock?: Clock
}

/**
 * A peer was banned from a torrent for a piece that failed its SHA-1 (what the agent reports
 * to the origins through the tracker, and names in its errors).
 */
export interface BadPiece {
  piece: number
  /** The peer's listen address as the tracker hands it out: the dialled ip:port, else ip:BEP 10 port. */
  peer: string
  peerIdHex: string
  /** By peer id ('-SO'): origins get the short, growing ban (originBanMs). */
  cls: PeerClass
  banMs: number
}

/** Per-download options of TorrentEngine.download(). */
export interface DownloadOptions {
  signal?: AbortSignal
  /** Called (synchronously, from the engine) after a peer was banned for a bad piece. */
  onBadPiece?: (bad: BadPiece) => void
  /**
   * Caps what this torrent reads from peers, bytes/s, under the host's cap (a job's bandwidth
   * class); 0 = unlimited, absent = unchanged. Concurrent calls share one torrent: the last
   * one sets it (TorrentEngine.setIngressCap changes it later).
   */
  ingressBytesPerSec?: number
}

export interface DownloadStats {
  /** Block bytes accepted, before their piece is verified: moves within a large piece. */
  bytesReceived: number
  /** Peers connected (handshaken) in this torrent now. */
  readonly peers: number
  bytesFromOrigins: number
  bytesFromAgents: number
  bytesUploaded: number
  piecesFromOrigins: number
  piecesFromAgents: number
  startedAt: number
  finishedAt?: number
  /** The torrent's own ingress cap (a job's bandwidth class), bytes/s; absent: never capped. */
  ingressCapBytesPerSec?: number
  /**
   * Piece block bytes received, by the zone each sending peer declared in its BEP 10 handshake
   * (NO_ZONE for a peer that declared none: stock clients, hosts without a zone). Computed when
   * read, from per-connection counts: nothing is added per block.
   */
  readonly bytesByZone: Record<string, number>
  /** The part of bytesByZone from peers that declared a zone other than ours (0 without a zone of our own). */
  readonly bytesCrossZone: number
}

/** bytesByZone's key for peers that declared no zone (not a valid zone label, so never a clash). */
export const NO_ZONE = '(none)'
/** What a zone label may be (as the tracker's `zone` parameter): short, plain characters. */
export const ZONE_LABEL = /^[A-Za-z0-9._-]{1,64}$/

/** Largest BEP 10 handshake decoded, bytes (real ones are a few hundred). */
export const MAX_EXTENDED_HANDSHAKE = 64 * 1024

/** Largest wire message we accept: a 1 MiB block plus the piece header, with slack. */
export const MAX_MESSAGE_LENGTH = (1 << 20) + 13

/**
 * The tunables' defaults (tuning.ts, the one table of them) and the engine's internal
 * constants, which no config sets.
 */
export const DEFAULTS = {
  ...TUNING_DEFAULTS,
  /** Smallest pipeline, and what a snubbed peer gets is 1. */
  pipelineMinDepth: 2,
  /** In flight at one peer before its rate is known. */
  pipelineInitialBytes: 1 << 20,
  /** In flight at one peer at most (bench: 4 MiB 420 MB/s, 8 MiB 510, 16 MiB 530). */
  pipelineMaxBytes: 16 << 20,
  /** A peer that stalled stallStrikes times stays away this long (origins are never banned for it). */
  stallBanMs: 2 * 60_000,
  /** Incoming requests queued per peer; we advertise it as reqq. */
  maxPeerRequests: 500,
  /** What we assume a peer queues when its extended handshake does not say (libtorrent's). */
  defaultPeerReqq: 250,
  /** Extra copies of a block requested from other peers in endgame. */
  endgameDuplicates: 2,
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
  /**
   * Memory for pieces being assembled, hashed or written (and kept for reuse), per torrent:
   * the bulk of a leecher's memory. The agent's budget is 200 MiB RSS while pulling a 4 GiB
   * blob: at 64 MiB it peaked at 213–216 MiB, at 32 MiB at 176–200, no slower (bench --parts
   * single --single-size 4GiB: 262–268 MB/s).
   */
  maxActiveBytes: 32 << 20,
  stoppedAnnounceTimeoutMs: 2_000,
} as const

/** Peer ids start with '-SO' for origins; everything else is an agent or a foreign client. */
export type PeerClass = 'origin' | 'agent'

export function classifyPeerId(peerId: Uint8Array): PeerClass {
  return peerId[0] === 0x2d && peerId[1] === 0x53 && peerId[2] === 0x4f ? 'origin' : 'agent'
}
