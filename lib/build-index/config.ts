/**
 * Build-index configuration (docs/architecture.md §3: port 15004). Every key has a default, so `{}`
 * is a valid config; unknown keys are errors at start-up.
 */

import { BackendConfig } from '../backend/index.js'
import { ListenConfig, LogConfig, z } from '../config/index.js'
import { DEFAULT_NAMESPACE, NAMESPACE_RE } from '../core/index.js'
import { RemoteEventsConfigSchema } from '../events/config.js'
import { HealthCheckConfig } from '../origin/client/health.js'
import { RedisConfig } from '../redis/index.js'
import { RemoteConfig } from './server/replication.js'

export const BuildIndexConfigSchema = z.strictObject({
  log: LogConfig,
  server: ListenConfig(15004),
  /**
   * Where tag objects live (keys under `tags/`). May be the same backend the origins write
   * blobs to: the key spaces do not overlap.
   */
  backend: BackendConfig.default({ type: 'fs', root: './data/backend' }),
  /** Origin HTTP servers (host:port). The first that answers tells which origin owns a digest. */
  origins: z.array(z.string().min(1)).min(1).default(['127.0.0.1:15002']),
  /**
   * Health checks of the origins (GET /health): an origin failing failThreshold checks in a row
   * is tried after the healthy owners until it passes passThreshold in a row.
   */
  originHealth: HealthCheckConfig,
  /** Namespace used for the "blob exists" check when a PUT gives no `?ns=`. */
  namespace: z
    .string()
    .regex(NAMESPACE_RE, 'namespace must be 1-128 of A-Z a-z 0-9 . _ -')
    .default(DEFAULT_NAMESPACE),
  /**
   * Who may purge a tombstone (DELETE /tags/:tag?purge=true), which lets a deleted immutable
   * version point at other bytes: `loopback` (clients on this host), `anywhere`, `nowhere`.
   */
  purgeFrom: z.enum(['loopback', 'anywhere', 'nowhere']).default('loopback'),
  /**
   * Blob GC (server/gc.ts): a blob no tag refers to any more is deleted from every origin and
   * the backend `graceMs` after its last tag was removed, unless it was re-tagged or pushed
   * again meanwhile. Due candidates are looked at every `sweepIntervalMs`.
   */
  gc: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** At most 7 days: the origins remember pushes that long (lib/origin/server/gc.ts). */
      graceMs: z
        .number()
        .int()
        .min(0)
        .max(7 * 24 * 60 * 60 * 1000)
        .default(60 * 60 * 1000),
      sweepIntervalMs: z.number().int().min(10).max(3_600_000).default(60_000),
    })
    .prefault({}),
  /**
   * Tag history (server/history.ts): creations, moves and deletes of each tag, the newest
   * `maxEntries` kept per tag in the backend (`history/<tag>`), listed by GET /tags/:tag/history.
   */
  history: z
    .strictObject({
      enabled: z.boolean().default(true),
      maxEntries: z.number().int().min(1).max(1000).default(100),
    })
    .prefault({}),
  /**
   * Several build-index instances sharing one backend: set `redis` (the same for all of them)
   * and every tag write takes a lease in Redis first, so one instance writes a tag at a time
   * (server/tag-lock.ts). Unset: writes are serialised in this process only; run one
   * build-index per backend.
   */
  redis: RedisConfig.optional(),
  lock: z
    .strictObject({
      /** A lease lives this long unless renewed (it is, every ttlMs/3, while the write runs). */
      ttlMs: z.number().int().min(100).max(600_000).default(30_000),
      /** Waiting longer than this for another instance's lease answers 503 UNAVAILABLE. */
      acquireTimeoutMs: z.number().int().min(10).max(600_000).default(10_000),
    })
    .prefault({}),
  /**
   * Remote clusters this build-index replicates tags to (server/replication.ts): a tag put here
   * (created or moved) whose name matches one of `tags` is pushed there with its blob, blob
   * first (to the remote's `origins`), then the tag (to its `buildIndex`), through a retry
   * queue persisted in the backend. Status: GET /replication.
   */
  remotes: z
    .array(RemoteConfig)
    .refine((rs) => new Set(rs.map((r) => r.name)).size === rs.length, 'remote names must be unique')
    .default([]),
  replication: z
    .strictObject({
      /** Retries back off from 1 s, doubling up to this (ms). */
      maxBackoffMs: z.number().int().min(10).max(3_600_000).default(60_000),
    })
    .prefault({}),
  list: z
    .strictObject({
      /** Page size of GET /list when no `limit` is given. */
      defaultLimit: z.number().int().min(1).max(1000).default(100),
      /** Larger `limit` values are clamped to this. */
      maxLimit: z.number().int().min(1).max(10000).default(1000),
    })
    .prefault({}),
  /** Write events to a herd's apiserver (docs/events.md); without it they are only logged. Ignored in a herd. */
  events: RemoteEventsConfigSchema.optional(),
})

export type BuildIndexConfig = z.infer<typeof BuildIndexConfigSchema>
