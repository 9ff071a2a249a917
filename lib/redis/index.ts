/**
 * Redis for the parts that share state between processes (the tracker's peer store, the
 * resource store, ...). The only importer of ioredis: everything else gets a connected client
 * from connectRedis() and the config schema from here.
 *
 * Connections fail fast instead of queueing forever: a command sent while Redis is down fails
 * after `commandTimeoutMs` (the caller decides: a tracker answers its announce from what it has,
 * a write fails with UNAVAILABLE), and the client reconnects in the background with backoff.
 */
import { Redis } from 'ioredis'
import { z } from '../config/index.js'
import { ShoalError } from '../errors/index.js'

export type { Redis }

export const RedisConfig = z.strictObject({
  /** `redis://[:password@]host:port[/db]`, `rediss://…` (TLS), or a unix socket path (`/run/redis.sock`). */
  url: z.string().min(1),
  /** Prefix of every key this process writes, so several clusters can share one Redis. */
  keyPrefix: z
    .string()
    .regex(/^[A-Za-z0-9:_.-]*$/, 'letters, digits and : _ . - only')
    .max(64)
    .default('shoal:'),
  /** One command's deadline (ms) before it fails with UNAVAILABLE. */
  commandTimeoutMs: z.number().int().min(10).max(600_000).default(2000),
  /** How long connectRedis waits for the first connection (ms). */
  connectTimeoutMs: z.number().int().min(10).max(600_000).default(5000),
})
export type RedisConfigT = z.infer<typeof RedisConfig>

/** A Redis client, connected (or UNAVAILABLE naming the address). Close it with closeRedis. */
export async function connectRedis(config: RedisConfigT, name = 'shoal'): Promise<Redis> {
  const common = {
    connectionName: name,
    keyPrefix: config.keyPrefix,
    lazyConnect: true,
    // Commands sent while disconnected fail at once instead of piling up in memory.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: config.commandTimeoutMs,
    connectTimeout: config.connectTimeoutMs,
    // Reconnect forever, backing off to 2 s: Redis restarted is a blip, not the end.
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
  }
  const client = config.url.startsWith('/')
    ? new Redis({ ...common, path: config.url })
    : new Redis(config.url, common)
  // Without a listener an 'error' event would crash the process; failures reach callers as
  // rejected commands instead.
  client.on('error', () => {})
  try {
    await client.connect()
  } catch (err) {
    client.disconnect()
    throw new ShoalError(
      'UNAVAILABLE',
      `cannot connect to Redis at ${redactedRedisUrl(config.url)}: ${(err as Error).message}`,
      {
        cause: err,
      },
    )
  }
  return client
}

/** Closes politely when connected (QUIT), at once otherwise. Idempotent. */
export async function closeRedis(client: Redis): Promise<void> {
  if (client.status === 'end') return
  if (client.status === 'ready') await client.quit().catch(() => client.disconnect())
  else client.disconnect()
}

/** The address without its password, for logs and errors. */
export function redactedRedisUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/)[^@/]*@/, '$1***@')
}

/** A failed Redis command as a ShoalError: UNAVAILABLE (the caller may retry), naming the operation. */
export function redisError(err: unknown, what: string): ShoalError {
  if (err instanceof ShoalError) return err
  return new ShoalError('UNAVAILABLE', `Redis ${what} failed: ${(err as Error).message}`, { cause: err })
}
