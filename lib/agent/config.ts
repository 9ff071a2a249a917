/** Agent configuration: one agent per host, local API on 127.0.0.1 by default. */

import { hostname } from 'node:os'
import { AuthConfig } from '../auth/index.js'
import { BandwidthConfig, ByteSize } from '../bandwidth/config.js'
import { ListenConfig, LogConfig, z } from '../config/index.js'
import { HostName } from '../jobs/kinds.js'
import { TorrentTuningConfig } from '../torrent/tuning.js'
import { JobsConfig } from './jobs/config.js'

export const AgentConfigSchema = z.strictObject({
  log: LogConfig,
  /** The local HTTP API PullCLI talks to. Bound to loopback unless you mean to share it. */
  server: ListenConfig(16002, '127.0.0.1'),
  /**
   * Bearer tokens for the API (lib/auth). On loopback (the default) none are needed: local
   * users read, and without tokens only local clients write anyway. Bound elsewhere, the agent
   * does not start without tokens, and every request from another host needs one.
   */
  auth: AuthConfig,
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
  /**
   * This host's zone (rack, site), a label sent on every announce: the tracker hands out peers of
   * the same zone first within each class (origins still first), so less traffic crosses zones.
   * Also declared to peers (BEP 10 handshake), which count the bytes they receive by zone
   * (`bytesByZone`, `bytesCrossZone` in GET /downloads/:digest). Unset: no preference.
   */
  zone: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/, '1-64 letters, digits, dots, dashes or underscores')
    .optional(),
  /**
   * How this host is named in distribution jobs (a job's source and target hosts, e.g. its
   * address 192.168.1.10): the agent runs the tasks whose `spec.host` is this. Default: the OS
   * host name.
   */
  hostName: HostName.default(() => hostname()),
  /** Distribution jobs (lib/agent/jobs, docs/jobs-agent.md): off unless `jobs.apiserver` is set. */
  jobs: JobsConfig,
  /** Tracker HTTP addresses (host:port or URL). */
  trackers: z.array(z.string().min(1)).min(1).default(['127.0.0.1:15003']),
  /** Build-index HTTP address, for resolving tags. */
  buildIndex: z.string().min(1).default('127.0.0.1:15004'),
  /**
   * How long a tag resolve waits for build-index's answer. Past it (or when build-index cannot
   * be reached) an immutable version this agent resolved before is answered from its tag cache;
   * `latest` fails. Short, since PullCLI waits behind it. Seconds.
   */
  resolveTimeoutSeconds: z.number().int().min(1).max(300).default(10),
  /**
   * The immutable versions (every version but `latest`) this agent resolved, kept under
   * dataDir/tags so they still resolve while build-index is unreachable. At most maxEntries,
   * least recently resolved dropped first; 0 turns the cache off.
   */
  tagCache: z
    .strictObject({ maxEntries: z.number().int().min(0).max(1_000_000).default(10_000) })
    .prefault({}),
  /**
   * A download that makes no progress (no verified piece; before the first piece, no metainfo)
   * for this long fails. There is no limit on the total time: a large blob takes what it takes.
   */
  stallTimeoutSeconds: z.number().int().min(1).default(120),
  /** Per-host caps on BitTorrent traffic, shared fairly across torrents; 0 = unlimited. */
  bandwidth: BandwidthConfig,
  /**
   * The cache's lifecycle (cache-policy.ts). A blob is used when a download puts it in the cache,
   * a local client reads it (a pull) or a peer downloads from it; one being read or uploaded is
   * never removed. Removed blobs stop being seeded; a later pull fetches them again.
   */
  cache: z
    .strictObject({
      /**
       * A blob unused for this long is removed; 0 = never for age (watermarks only). Seconds.
       * 3 days: a blob of a daily distribution outlives the next day's run (peers still pull
       * from it and re-runs are local) and a weekend of retries, while superseded daily versions
       * of large files do not pile up on every host for weeks. The watermarks guard the disk
       * whatever the TTL.
       */
      ttlSeconds: z.number().int().min(0).default(259_200),
      /**
       * Above this the least recently used blobs are removed down to lowWatermark: a fraction of
       * the disk holding dataDir when at most 1 (its used share, the host's other files
       * included: the cache yields to them), else bytes of cached blobs. 0.85/0.75 leave the
       * host more room than the origin's 0.9/0.8: the disk is shared with what pulls write.
       */
      highWatermark: z.number().positive().default(0.85),
      lowWatermark: z.number().positive().default(0.75),
      /** How often the cache is swept (at most 256 blobs removed per sweep). Seconds. */
      sweepIntervalSeconds: z.number().int().min(1).max(86_400).default(60),
    })
    .prefault({})
    .refine((c) => c.lowWatermark <= c.highWatermark && c.lowWatermark <= 1 === c.highWatermark <= 1, {
      message: 'lowWatermark must be at most highWatermark, both fractions (<= 1) or both bytes (> 1)',
    }),
})

export type AgentConfig = z.infer<typeof AgentConfigSchema>
