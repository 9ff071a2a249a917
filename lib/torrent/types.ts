/**
 * Contracts between the BitTorrent engine and the parts around it: the store that holds a
 * torrent's bytes, and the tracker client that tells us about peers.
 */
import type { Clock, HostBandwidth } from '../bandwidth/index.js'
import type { InfoHash } from '../core/index.js'
import type { Logger } from '../log/index.js'
import type { Registry } from '../metrics/index.js'

export type { TorrentStorage } from './storage.js'

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
 * The engine's tunables, every one optional (defaults in DEFAULTS; lib/torrent/config.ts has
 * the same fields as a zod schema for daemon configs).
 */
export interface EngineTuning {
  /** Connections (handshaken) per torrent, default 50. */
  maxConnectionsPerTorrent?: number
  /** Connections of this engine over all torrents, pending ones included; default 400. */
  maxConnections?: number
  /**
   * Incoming connections from one IP address over all torrents, pending ones included;
   * default 64. See DEFAULTS for why, and lower it nowhere near 1: NAT and hosts running
   * several clients are legitimate.
   */
  maxConnectionsPerIp?: number
  /** Incoming handshaken connections from one IP address in one torrent; default 8. */
  maxConnectionsPerIpPerTorrent?: number
  /** Incoming connections from one IP address still in their handshake; default 8. */
  maxPendingPerIp?: number
  /**
   * From accepting a connection to the peer's handshake (an MSE/PE negotiation included);
   * default 5 s. Incoming connections get the shorter of this and handshakeTimeoutMs.
   */
  incomingHandshakeTimeoutMs?: number
  /**
   * Block size offered to other Shoal peers in the BEP 10 handshake (the smaller of the two
   * offers is used; stock clients always get 16 KiB). A power of two, 16 KiB to 1 MiB.
   */
  blockSize?: number
  /** Upper bound of the adaptive request pipeline, in requests per peer; default 256. */
  pipelineDepth?: number
  /** Queueing at the sender the pipeline allows on top of the round trip, ms; default 100. */
  pipelineQueueMs?: number
  /** A peer that has not answered its oldest request for this long is snubbed; default 30 s. */
  requestTimeoutMs?: number
  /** Peers whose requests timed out this many times are banned as stalled; default 3. */
  stallStrikes?: number
  /** Outgoing TCP connect, default 5 s. */
  connectTimeoutMs?: number
  /** From connected to the peer's handshake, default 10 s. */
  handshakeTimeoutMs?: number
  /** From the handshake to the peer's first message, default 30 s. */
  firstMessageTimeoutMs?: number
  /** Seeding, close a connection whose peer stayed uninterested this long; default 60 s. */
  seedIdleTimeoutMs?: number
  /** Downloading, close a connection no block went over (either way) for this long; default 120 s. */
  leechIdleTimeoutMs?: number
  /** A peer that sent a bad piece is banned from that torrent this long; default 10 min. */
  banMs?: number
  /**
   * An origin that sent a bad piece is banned from that torrent this long, doubling with each
   * further bad piece up to banMs, then dialled again: it is the blob's source, and restores
   * its copy once told (onBadPiece). Default 10 s.
   */
  originBanMs?: number
  /** Peers we upload to at once, per torrent; default 32. */
  uploadSlots?: number
  /** With more interested peers than slots, one slot rotates this often; default 15 s. */
  optimisticUnchokeMs?: number
  /**
   * An unchoked peer that asked for nothing this long gives its slot to one that waits;
   * default 5 s. One that asked for nothing at all with its slot waits behind peers that
   * never wasted one.
   */
  slotIdleMs?: number
  /**
   * A peer that was given an upload slot and asked for nothing with it, and has asked for
   * nothing since, is disconnected this long after, while the torrent is contended (peers
   * wait for a slot, or it is at maxConnectionsPerTorrent); default 30 s. A full torrent also
   * closes one such peer at once to let a new peer in.
   */
  idlePeerEvictMs?: number
  /**
   * Origins whose egress is capped: a piece queued for one peer is not sent to another within
   * this long; their requests are rejected (BEP 6) and the piece re-advertised to them after
   * it, so agents take the copies from each other (serve-once.ts). 0 = off; default 5 s.
   */
  originServeOnceMs?: number
  /**
   * SHA-1 of pieces on a worker thread instead of the event loop; default false (measured: no
   * faster on 2 cores, more CPU per byte; see hasher.ts). For hosts with cores to spare.
   */
  hashOnWorker?: boolean
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

/** The block size of BEP 3: what we request from, and serve to, stock clients. */
export const BLOCK_SIZE = 16 << 10
/** Largest block two Shoal peers may negotiate. */
export const MAX_BLOCK_SIZE = 1 << 20

/** A block size two Shoal peers may use: a power of two from 16 KiB to MAX_BLOCK_SIZE. */
export function validBlockSize(n: number): boolean {
  return n >= BLOCK_SIZE && n <= MAX_BLOCK_SIZE && (n & (n - 1)) === 0
}
/** Largest wire message we accept: a 1 MiB block plus the piece header, with slack. */
export const MAX_MESSAGE_LENGTH = (1 << 20) + 13

export const DEFAULTS = {
  maxConnectionsPerTorrent: 50,
  maxConnections: 400,
  /**
   * Per remote address (incoming connections only: what we dial comes from the tracker). A
   * host talks to another at most once per torrent, so 64 covers, e.g., 8 agents behind one
   * NAT pulling 8 blobs each from an origin at once, while no one address holds more than a
   * sixth of maxConnections. (16 would be too low: one agent pulling 16 blobs from an origin
   * is normal.) Clusters on one machine (devcluster, bench: everyone is 127.0.0.1) raise them
   * in config, see config/agent/development.yaml.
   */
  maxConnectionsPerIp: 64,
  /**
   * Distinct peers behind one address in one torrent; the tracker hands out one peer per
   * address anyway. 8 of 50: fake peers from one address leave 42 connections to others.
   */
  maxConnectionsPerIpPerTorrent: 8,
  /**
   * A real peer sends its handshake within a round trip of connecting, so few connections
   * from one address are ever pending at once; silent ones from one address can hold at most
   * this many of the engine's 256 pending places, for at most incomingHandshakeTimeoutMs.
   */
  maxPendingPerIp: 8,
  /** Half the old 10 s, and now from the accept (the MSE stage and the plain one together). */
  incomingHandshakeTimeoutMs: 5_000,
  /**
   * Chosen with test/bench/wire.ts --block-kib 16,64,128,256 (256 MiB, loopback, MB/s median of
   * 5): 489, 484, 560, 625, with the least CPU per byte on both sides at 256 KiB. It is also
   * the smallest piece length, so a block never holds more than a piece in endgame.
   */
  blockSize: 256 << 10,
  pipelineDepth: 256,
  pipelineQueueMs: 100,
  /** Smallest pipeline, and what a snubbed peer gets is 1. */
  pipelineMinDepth: 2,
  /** In flight at one peer before its rate is known. */
  pipelineInitialBytes: 1 << 20,
  /** In flight at one peer at most (bench: 4 MiB 420 MB/s, 8 MiB 510, 16 MiB 530). */
  pipelineMaxBytes: 16 << 20,
  requestTimeoutMs: 30_000,
  stallStrikes: 3,
  connectTimeoutMs: 5_000,
  handshakeTimeoutMs: 10_000,
  firstMessageTimeoutMs: 30_000,
  seedIdleTimeoutMs: 60_000,
  leechIdleTimeoutMs: 120_000,
  /** A peer that sent a bad piece stays away this long. */
  banMs: 10 * 60_000,
  /** An origin that sent a bad piece stays away this long, doubling per further bad piece. */
  originBanMs: 10_000,
  /** A peer that stalled stallStrikes times stays away this long (origins are never banned for it). */
  stallBanMs: 2 * 60_000,
  uploadSlots: 32,
  optimisticUnchokeMs: 15_000,
  originServeOnceMs: 5_000,
  hashOnWorker: false,
  /** An unchoked peer that asked for nothing this long gives its slot to one that waits. */
  slotIdleMs: 5_000,
  /** A contended torrent closes a peer that wasted its slot and asked for nothing since, after this. */
  idlePeerEvictMs: 30_000,
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
