/**
 * Proxy configuration (docs/architecture.md §3: port 15000). Every key has a default, so `{}` is a
 * valid config; unknown keys are errors at start-up.
 *
 * The admin/metrics port 15005 of §3 is not a separate listener yet: /health, /readiness and
 * /metrics are served on the push port.
 */
import { ListenConfig, LogConfig, RateLimitConfig, z } from '../config/index.js'
import { RemoteEventsConfigSchema } from '../events/config.js'
import { HealthCheckConfig } from '../origin/client/health.js'

/** The origin's default uploadChunkLimit (lib/origin/config.ts), the largest chunk it accepts. */
export const MAX_UPLOAD_CHUNK_SIZE = 64 << 20

export const ProxyConfigSchema = z.strictObject({
  log: LogConfig,
  server: ListenConfig(15000),
  /**
   * Per-client-address rate limits (docs/security.md). push: blob PUTs; past it 429
   * TOO_MANY_REQUESTS with Retry-After. A directory push sends one PUT per distinct content.
   */
  rateLimits: z.strictObject({ push: RateLimitConfig(200, 2000) }).prefault({}),
  /** Origin HTTP servers (host:port). The first that answers tells which origin owns a digest. */
  origins: z.array(z.string().min(1)).min(1).default(['127.0.0.1:15002']),
  /**
   * Health checks of the origins (GET /health): an origin failing failThreshold checks in a row
   * is tried after the healthy owners until it passes passThreshold in a row.
   */
  originHealth: HealthCheckConfig,
  /** Build-index (host:port) that tags are put into. */
  buildIndex: z.string().min(1).default('127.0.0.1:15004'),
  /**
   * Bytes per PATCH when streaming a push to the origin; the proxy holds at most one chunk
   * per upload in memory. Capped at 64 MiB: origins refuse PATCH bodies larger than their
   * `uploadChunkLimit` (64 MiB by default) with PAYLOAD_TOO_LARGE, so a bigger chunk could never
   * be uploaded and would only cost memory per concurrent push.
   */
  uploadChunkSize: z
    .number()
    .int()
    .min(64 << 10)
    .max(MAX_UPLOAD_CHUNK_SIZE)
    .default(16 << 20),
  /** Write events to a herd's apiserver (docs/events.md); without it they are only logged. Ignored in a herd. */
  events: RemoteEventsConfigSchema.optional(),
})

export type ProxyConfig = z.infer<typeof ProxyConfigSchema>
