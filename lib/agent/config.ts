/** Agent configuration: one agent per host, local API on 127.0.0.1 by default. */
import { BandwidthConfig, ByteSize } from '../bandwidth/config.js'
import { ListenConfig, LogConfig, z } from '../config/index.js'
import { TorrentTuningConfig } from '../torrent/tuning.js'

export const AgentConfigSchema = z.strictObject({
  log: LogConfig,
  /** The local HTTP API PullCLI talks to. Bound to loopback unless you mean to share it. */
  server: ListenConfig(16002, '127.0.0.1'),
  /**
   * The BitTorrent peer port other agents connect to, and the engine's tuning (every key of
   * TorrentTuningConfig, optional: an absent key takes the engine's default).
   */
  peer: TorrentTuningConfig.extend({
    host: z.string().min(1).default('0.0.0.0'),
    port: z.number().int().min(0).max(65535).default(16001),
  }).prefault({}),
  /** Downloads, cached blobs and resume bitfields live here. */
  dataDir: z.string().min(1).default('./data/agent'),
  /**
   * Space every download leaves free on dataDir's file system, bytes or a size ("1GiB"): a
   * download whose missing bytes do not fit above it is refused (507 INSUFFICIENT_STORAGE)
   * before it writes anything.
   */
  minFreeBytes: ByteSize.default(256 * 1024 ** 2),
  /** Tracker HTTP addresses (host:port or URL). */
  trackers: z.array(z.string().min(1)).min(1).default(['127.0.0.1:15003']),
  /** Build-index HTTP address, for resolving tags. */
  buildIndex: z.string().min(1).default('127.0.0.1:15004'),
  /**
   * A download that makes no progress (no verified piece; before the first piece, no metainfo)
   * for this long fails. There is no limit on the total time: a large blob takes what it takes.
   */
  stallTimeoutSeconds: z.number().int().min(1).default(120),
  /** Per-host caps on BitTorrent traffic, shared fairly across torrents; 0 = unlimited. */
  bandwidth: BandwidthConfig,
})

export type AgentConfig = z.infer<typeof AgentConfigSchema>
