/**
 * Tracker configuration. Every field has a default, so `{}` is a valid config; unknown keys are
 * errors (strict objects), so a misspelt key stops the daemon instead of being ignored.
 */
import { ListenConfig, LogConfig, RateLimitConfig, z } from '../config/index.js'
import { HealthCheckConfig } from '../origin/client/health.js'
import { RedisConfig } from '../redis/index.js'

/** `host:port` or `[v6]:port`; hosts are resolved once at start-up. */
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/

export const HostPort = z
  .string()
  .regex(HOST_PORT, { message: 'expected host:port (IPv6 as [addr]:port)', abort: true })
  .refine((v) => {
    const port = Number(v.slice(v.lastIndexOf(':') + 1))
    return port >= 1 && port <= 65535
  }, 'port must be 1..65535')

export const OriginEntry = z.strictObject({
  /** The origin's BitTorrent peer address as this tracker sees it on announces (socket ip:port). */
  peer: HostPort,
  /** The origin's HTTP server, where metainfo is fetched from. */
  http: HostPort,
})

/**
 * Where peers are kept: this process's memory (one tracker, or trackers that each own the
 * infohashes agents rendezvous-hash to them), or Redis (several trackers share every swarm).
 */
export const PeerStoreConfig = z
  .discriminatedUnion('type', [
    z.strictObject({
      type: z.literal('memory'),
      /** Oldest peers of a swarm are evicted beyond this, so fake peer ids cannot exhaust memory. */
      maxPeersPerInfoHash: z.number().int().min(1).max(1_000_000).default(5000),
      /** Bound over all swarms together (oldest evicted first). */
      maxPeers: z.number().int().min(1).max(10_000_000).default(200_000),
    }),
    z.strictObject({
      type: z.literal('redis'),
      redis: RedisConfig,
      /** As for memory: the stalest announcer of a swarm is evicted beyond this. */
      maxPeersPerInfoHash: z.number().int().min(1).max(1_000_000).default(5000),
      /** Over all swarms in this Redis (every tracker sharing it): the stalest announcers go first. */
      maxPeers: z.number().int().min(1).max(100_000_000).default(1_000_000),
    }),
  ])
  .prefault({ type: 'memory' })

export const TrackerConfigSchema = z
  .strictObject({
    log: LogConfig,
    server: ListenConfig(15003),
    /**
     * Per-client-address rate limits (docs/security.md). announce: an agent announces each of
     * its torrents every announceInterval; past it 429 TOO_MANY_REQUESTS with Retry-After (an
     * agent then tries its next tracker).
     */
    rateLimits: z.strictObject({ announce: RateLimitConfig(500, 10_000) }).prefault({}),
    /** Seconds between regular announces, told to every client. */
    announceInterval: z.number().int().min(1).max(3600).default(30),
    /** Clients must not announce more often than this (seconds). */
    minInterval: z.number().int().min(1).max(3600).default(10),
    /** A peer that has not announced for this long is never handed out again (2-3x the interval). */
    peerTtlSeconds: z.number().int().min(2).max(86_400).default(90),
    /** Peers handed out when the client sends no numwant. */
    defaultNumWant: z.number().int().min(0).max(1000).default(50),
    /** Upper bound on numwant, whatever the client asks for. */
    maxNumWant: z.number().int().min(1).max(1000).default(50),
    /** Accept the `ip` announce parameter (only behind a trusted proxy/NAT set-up). */
    trustClientIp: z.boolean().default(false),
    /** The origin cluster: handed out first, and where metainfo comes from. */
    origins: z.array(OriginEntry).max(1000).default([]),
    /**
     * Health checks of the origins (GET /health): an origin failing failThreshold checks in a row
     * is tried after the healthy owners until it passes passThreshold in a row.
     */
    originHealth: HealthCheckConfig,
    peerStore: PeerStoreConfig,
    /** Metainfo files kept in memory (LRU, by digest). */
    metainfoCacheSize: z.number().int().min(0).max(1_000_000).default(1000),
    /** Timeout for one metainfo request to one origin (ms). */
    originTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
  })
  .superRefine((c, ctx) => {
    if (c.peerTtlSeconds <= c.announceInterval) {
      ctx.addIssue({
        code: 'custom',
        path: ['peerTtlSeconds'],
        message: `must be greater than announceInterval (${c.announceInterval}); 2-3x is usual, or peers expire between announces`,
      })
    }
    if (c.minInterval > c.announceInterval) {
      ctx.addIssue({ code: 'custom', path: ['minInterval'], message: 'must not exceed announceInterval' })
    }
  })

export type TrackerConfig = z.infer<typeof TrackerConfigSchema>
export type OriginAddress = z.infer<typeof OriginEntry>

/** Splits a validated host:port into its parts (brackets removed from IPv6). */
export function splitHostPort(value: string): { host: string; port: number } {
  const i = value.lastIndexOf(':')
  let host = value.slice(0, i)
  if (host.startsWith('[')) host = host.slice(1, -1)
  return { host, port: Number(value.slice(i + 1)) }
}
