/**
 * The engine's tunables: the one table of their names, validation and defaults. Everything
 * else derives from it: EngineTuning (the engine's options, types.ts), TUNING_DEFAULTS (and so
 * DEFAULTS), the daemons' `peer` config section (TorrentTuningConfig below) and resolveOptions
 * (engine-setup.ts). config/{agent,origin}/base.yaml show every key with its default as a
 * comment; test/unit/torrent-config.test.ts fails when they disagree with this table.
 *
 * Adding a tunable: one entry here (schema, default, and a comment that says why), its
 * commented line in both base.yaml files, and the code that reads ctx.options.<key>.
 */
import { type ZodType, z } from '../config/index.js'

/** The block size of BEP 3: what we request from, and serve to, stock clients. */
export const BLOCK_SIZE = 16 << 10
/** Largest block two Shoal peers may negotiate. */
export const MAX_BLOCK_SIZE = 1 << 20

/** A block size two Shoal peers may use: a power of two from 16 KiB to MAX_BLOCK_SIZE. */
export function validBlockSize(n: number): boolean {
  return n >= BLOCK_SIZE && n <= MAX_BLOCK_SIZE && (n & (n - 1)) === 0
}

const count = (max: number) => z.number().int().min(1).max(max)
const ms = () => z.number().int().min(1)

function tunable<S extends ZodType>(schema: S, value: z.infer<S>): { schema: S; default: z.infer<S> } {
  return { schema, default: value }
}

export const TUNABLES = {
  /** Connections (handshaken) per torrent. */
  maxConnectionsPerTorrent: tunable(count(1000), 50),
  /** Connections of this engine over all torrents, pending ones included. */
  maxConnections: tunable(count(100_000), 400),
  /**
   * Incoming connections from one IP address over all torrents, pending ones included (what
   * we dial comes from the tracker). A host talks to another at most once per torrent, so 64
   * covers, e.g., 8 agents behind one NAT pulling 8 blobs each from an origin at once, while
   * no one address holds more than a sixth of maxConnections. (16 would be too low: one agent
   * pulling 16 blobs from an origin is normal; and never near 1: NAT and hosts running several
   * clients are legitimate.) Clusters on one machine (devcluster, bench: everyone is
   * 127.0.0.1) raise it in config, see config/agent/development.yaml.
   */
  maxConnectionsPerIp: tunable(count(100_000), 64),
  /**
   * Incoming handshaken connections from one IP address in one torrent; the tracker hands out
   * one peer per address anyway. 8 of 50: fake peers from one address leave 42 to others.
   */
  maxConnectionsPerIpPerTorrent: tunable(count(1000), 8),
  /**
   * Incoming connections from one IP address still in their handshake. A real peer sends its
   * handshake within a round trip of connecting, so few from one address are ever pending at
   * once; silent ones from one address hold at most this many of the engine's 256 pending
   * places, for at most incomingHandshakeTimeoutMs.
   */
  maxPendingPerIp: tunable(count(100_000), 8),
  /**
   * From accepting a connection to the peer's handshake (an MSE/PE negotiation included).
   * Incoming connections get the shorter of this and handshakeTimeoutMs.
   */
  incomingHandshakeTimeoutMs: tunable(ms(), 5_000),
  /**
   * Block size offered to other Shoal peers in the BEP 10 handshake (the smaller of the two
   * offers is used; stock clients always get 16 KiB). A power of two, 16 KiB to 1 MiB.
   * Chosen with test/bench/wire.ts --block-kib 16,64,128,256 (256 MiB, loopback, MB/s median
   * of 5): 489, 484, 560, 625, with the least CPU per byte on both sides at 256 KiB. It is
   * also the smallest piece length, so a block never holds more than a piece in endgame.
   */
  blockSize: tunable(
    z
      .number()
      .int()
      .refine(validBlockSize, 'blockSize must be a power of two from 16384 (16 KiB) to 1048576 (1 MiB)'),
    256 << 10,
  ),
  /** Upper bound of the adaptive request pipeline, in requests per peer. */
  pipelineDepth: tunable(count(2000), 256),
  /** Queueing at the sender the pipeline allows on top of the round trip, ms. */
  pipelineQueueMs: tunable(ms(), 100),
  /** A peer that has not answered its oldest request for this long is snubbed. */
  requestTimeoutMs: tunable(ms(), 30_000),
  /** Peers whose requests timed out this many times are banned as stalled (origins never are). */
  stallStrikes: tunable(z.number().int().min(1), 3),
  /** Outgoing TCP connect. */
  connectTimeoutMs: tunable(ms(), 5_000),
  /** From connected to the peer's handshake. */
  handshakeTimeoutMs: tunable(ms(), 10_000),
  /** From the handshake to the peer's first message. */
  firstMessageTimeoutMs: tunable(ms(), 30_000),
  /** Seeding, close a connection whose peer stayed uninterested this long. */
  seedIdleTimeoutMs: tunable(ms(), 60_000),
  /** Downloading, close a connection no block went over (either way) for this long. */
  leechIdleTimeoutMs: tunable(ms(), 120_000),
  /** A peer that sent a bad piece is banned from that torrent this long. */
  banMs: tunable(ms(), 10 * 60_000),
  /**
   * An origin that sent a bad piece is banned from that torrent this long, doubling with each
   * further bad piece up to banMs, then dialled again: it is the blob's source, and restores
   * its copy once told (onBadPiece).
   */
  originBanMs: tunable(ms(), 10_000),
  /** Peers we upload to at once, per torrent. */
  uploadSlots: tunable(count(1000), 32),
  /** With more interested peers than slots, one slot rotates this often. */
  optimisticUnchokeMs: tunable(ms(), 15_000),
  /**
   * An unchoked peer that asked for nothing this long gives its slot to one that waits. One
   * that asked for nothing at all with its slot waits behind peers that never wasted one.
   */
  slotIdleMs: tunable(ms(), 5_000),
  /**
   * A peer that was given an upload slot and asked for nothing with it, and has asked for
   * nothing since, is disconnected this long after, while the torrent is contended (peers
   * wait for a slot, or it is at maxConnectionsPerTorrent). A full torrent also closes one
   * such peer at once to let a new peer in.
   */
  idlePeerEvictMs: tunable(ms(), 30_000),
  /**
   * Origins whose egress is capped: a piece queued for one peer is not sent to another within
   * this long; their requests are rejected (BEP 6) and the piece re-advertised to them after
   * it, so agents take the copies from each other (upload/serve-once.ts). 0 = off.
   */
  originServeOnceMs: tunable(z.number().int().min(0), 5_000),
  /**
   * SHA-1 of pieces on a worker thread instead of the event loop (measured: no faster on 2
   * cores, more CPU per byte; see download/hasher.ts). For hosts with cores to spare.
   */
  hashOnWorker: tunable(z.boolean(), false),
}

type Tunables = typeof TUNABLES
export type TunableKey = keyof Tunables

/** The engine's tunables, every one optional (absent = its TUNABLES default). */
export type EngineTuning = { [K in TunableKey]?: Tunables[K]['default'] }
/** EngineTuning with every default filled in. */
export type ResolvedOptions = { [K in TunableKey]: Tunables[K]['default'] }

export const TUNABLE_KEYS = Object.keys(TUNABLES) as TunableKey[]

export const TUNING_DEFAULTS = Object.fromEntries(
  TUNABLE_KEYS.map((k) => [k, TUNABLES[k].default]),
) as ResolvedOptions

/** The `peer` config section's tuning keys: every one optional, validated by its table schema. */
export const TorrentTuningConfig = z.strictObject(
  Object.fromEntries(TUNABLE_KEYS.map((k) => [k, TUNABLES[k].schema.optional()])) as {
    [K in TunableKey]: z.ZodOptional<Tunables[K]['schema']>
  },
)
