/** Origin configuration (config/origin/base.yaml documents every key). */
import { BackendConfig } from '../backend/index.js'
import { NamespaceBackendsConfig } from '../backend/router.js'
import { BandwidthConfig } from '../bandwidth/config.js'
import { ListenConfig, LogConfig, RateLimitConfig, z } from '../config/index.js'
import { TorrentTuningConfig } from '../torrent/tuning.js'
import { HealthCheckConfig } from './client/health.js'
import { DnsMembersConfig } from './server/members.js'
import { RepairConfig } from './server/repair.js'
import { ReplicationConfig } from './server/replication.js'

export const DEFAULT_UPLOAD_CHUNK_LIMIT = 64 << 20

export const OriginConfigSchema = z.strictObject({
  log: LogConfig,
  /** HTTP API (uploads, downloads, metainfo, locations). */
  server: ListenConfig(15002),
  /**
   * BitTorrent listener of the seeding engine (wired in by the caller), and the engine's
   * tuning (every key of TorrentTuningConfig, optional: absent = the engine's default).
   */
  peer: TorrentTuningConfig.extend({
    host: z.string().min(1).default('0.0.0.0'),
    port: z.number().int().min(0).max(65535).default(15001),
  }).prefault({}),
  /** Local cache, uploads in progress and temp files. */
  dataDir: z.string().min(1).default('./data/origin'),
  /** Durable storage the origin writes every committed blob back to; default: fs under <dataDir>/backend. */
  backend: BackendConfig.optional(),
  /**
   * Backends per namespace: the first entry whose regex matches the whole namespace wins; a
   * namespace none matches uses `backend` (when given) or is refused.
   */
  namespaces: NamespaceBackendsConfig.default([]),
  /** The cluster's tracker; metainfo announces to `${trackerUrl}/announce`. */
  trackerUrl: z
    .string()
    .regex(/^https?:\/\/[^/\s]+/, 'must be an http(s) URL such as http://127.0.0.1:15003')
    .default('http://127.0.0.1:15003'),
  /**
   * Trackers this origin announces its blobs to (host:port or URL). Each blob's tracker is
   * chosen by rendezvous hashing, as agents choose it, with failover. Empty: trackerUrl alone.
   */
  trackers: z.array(z.string().min(1)).default([]),
  hashring: z
    .strictObject({
      /** HTTP addresses (host:port) of every origin in the ring, this one included; empty = just this one. */
      nodes: z.array(z.string().min(1)).default([]),
      /** Instead of `nodes`: a DNS name resolving to every origin, re-resolved periodically. */
      dns: DnsMembersConfig.optional(),
      /** How many origins own each blob (answered by /blobs/:digest/locations). */
      replicas: z.number().int().min(1).max(16).default(1),
      /** Active health checks of the other members; unhealthy ones are passed over for the next. */
      healthCheck: HealthCheckConfig,
    })
    .refine((h) => !(h.dns && h.nodes.length > 0), {
      message: 'set hashring.nodes or hashring.dns, not both',
      path: ['dns'],
    })
    .prefault({}),
  /**
   * This origin's advertised HTTP address (host:port) in the ring, handed to remote proxies and
   * build-indexes by GET /blobs/:digest/locations. Default: server.host when it is a specific
   * address, else this host's first non-internal IPv4 (127.0.0.1 only when there is none), with
   * the bound port.
   */
  self: z.string().min(1).optional(),
  /** Largest PATCH body accepted, bytes. */
  uploadChunkLimit: z.number().int().positive().default(DEFAULT_UPLOAD_CHUNK_LIMIT),
  /**
   * A blob is re-hashed at most once per this many seconds, however often agents report bad
   * pieces of it (reports meanwhile get the last verdict); a blob whose backend copy turned
   * out corrupt is refused for this long before the backend is read again. Seconds.
   */
  verifyIntervalSeconds: z.number().int().min(1).max(86_400).default(60),
  /**
   * An upload with no chunk for this long expires: its next request is UPLOAD_NOT_FOUND and
   * its file is deleted (checked on each request and every ttl/4, at most hourly), seconds.
   */
  uploadTtlSeconds: z.number().int().positive().default(3_600),
  /**
   * Per-client-address rate limits (docs/security.md). push: upload starts (POST …/uploads),
   * not chunks; a proxy is one client and carries every push through it, hence the high default.
   */
  rateLimits: z.strictObject({ push: RateLimitConfig(500, 5000) }).prefault({}),
  /** Open uploads over all clients; a POST over it is 429 TOO_MANY_REQUESTS. */
  maxOpenUploads: z.number().int().positive().default(256),
  /** Open uploads per client address (a proxy is one client); a POST over it is 429. */
  maxOpenUploadsPerClient: z.number().int().positive().default(64),
  /**
   * Build-index (host:port) asked before a blob is deleted whether tags point at it; when it
   * cannot answer, the delete is refused (503).
   */
  buildIndex: z.string().min(1).default('127.0.0.1:15004'),
  /** Per-host caps on BitTorrent (seeding) traffic, shared fairly across torrents; 0 = unlimited. */
  bandwidth: BandwidthConfig,
  /**
   * Committed blobs are written to the backend in the background from a queue persisted under
   * <dataDir>/writeback (an upload is acknowledged once its mark is durable).
   */
  writeBack: z
    .strictObject({
      /** Blobs written back at once. */
      concurrency: z.number().int().min(1).max(64).default(2),
      /** Retries wait 1 s, doubling (with jitter) up to this, forever. Seconds. */
      maxBackoffSeconds: z.number().int().min(1).max(86_400).default(300),
    })
    .prefault({}),
  /**
   * After a commit, the other owners of the blob copy it from this origin (in the background,
   * after the push is acknowledged); each copy is retried with capped backoff `attempts` times.
   */
  replication: ReplicationConfig,
  /**
   * When the ring's members or their health change, every origin makes the current owners of
   * the blobs in its cache hold them, at a bounded rate.
   */
  repair: RepairConfig,
  /** The local cache's eviction (a blob with a pending write-back is never evicted). */
  cache: z
    .strictObject({
      /** A blob neither read nor seeded for this long is evicted; 0 = never for idleness. Seconds. */
      idleSeconds: z.number().int().min(0).default(604_800),
      /**
       * Above this the least recently used blobs are evicted down to lowWatermark: a fraction of
       * the disk holding dataDir when at most 1 (its used share), else bytes of cached blobs.
       */
      highWatermark: z.number().positive().default(0.9),
      lowWatermark: z.number().positive().default(0.8),
      /** How often the cache is swept. Seconds. */
      sweepIntervalSeconds: z.number().int().min(1).max(86_400).default(60),
    })
    .prefault({})
    .refine((c) => c.lowWatermark <= c.highWatermark && c.lowWatermark <= 1 === c.highWatermark <= 1, {
      message: 'lowWatermark must be at most highWatermark, both fractions (<= 1) or both bytes (> 1)',
    }),
})

export type OriginConfig = z.infer<typeof OriginConfigSchema>
