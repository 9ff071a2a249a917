/**
 * A herd (tracker, origin, build-index, proxy in one process) on loopback with any free ports
 * and short announce intervals, stopped when the test ends. `origin` adds origin settings
 * (e.g. caps), `buildIndex` build-index settings; `peerTtlSeconds` how long the tracker keeps a peer that stopped announcing;
 * `server` HTTP limits for every service.
 */
import { join } from 'node:path'
import { MemoryBackend } from '../../lib/backend/index.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { type BuildIndexServer, startBuildIndex } from '../../lib/build-index/server/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { HerdConfigSchema } from '../../lib/herd/config.js'
import { type Herd, startHerd } from '../../lib/herd/index.js'
import { type Logger, silentLogger } from '../../lib/log/index.js'
import { ProxyConfigSchema } from '../../lib/proxy/config.js'
import { type ProxyServer, startProxy } from '../../lib/proxy/server/index.js'

export async function startTestHerd(
  t: { teardown(fn: () => unknown): void },
  dir: string,
  opts: {
    origin?: Record<string, unknown>
    peerTtlSeconds?: number
    logger?: Logger
    /** HTTP limits (the `server` section) of every service, e.g. a short idleTimeoutMs. */
    server?: Record<string, unknown>
    /** Build-index settings, e.g. replication `remotes`. */
    buildIndex?: Record<string, unknown>
    /** More of the proxy's config (e.g. rateLimits). */
    proxy?: Record<string, unknown>
  } = {},
): Promise<Herd> {
  const server = opts.server ? { server: opts.server } : {}
  const herd = await startHerd(
    validateConfig(HerdConfigSchema, {
      dataDir: join(dir, 'herd'),
      bindHost: '127.0.0.1',
      basePort: 0,
      log: { level: 'silent' },
      tracker: { announceInterval: 2, minInterval: 1, peerTtlSeconds: opts.peerTtlSeconds ?? 10, ...server },
      origin: { ...opts.origin, ...server },
      buildIndex: { ...opts.buildIndex, ...server },
      proxy: { ...opts.proxy, ...server },
    }),
    { logger: opts.logger ?? silentLogger() },
  )
  t.teardown(() => herd.stop())
  return herd
}

/**
 * The push path in front of origins the test runs itself: a build-index (tags in memory) and a
 * proxy with 1 MiB upload chunks, both on loopback, stopped when the test ends.
 */
export async function startPushFront(
  t: { teardown(fn: () => unknown): void },
  origins: string[],
): Promise<{ buildIndex: BuildIndexServer; proxy: ProxyServer }> {
  const listen = { host: '127.0.0.1', port: 0 }
  const logger = silentLogger()
  const buildIndex = await startBuildIndex(
    validateConfig(BuildIndexConfigSchema, { server: listen, origins }),
    { logger, backend: new MemoryBackend() },
  )
  t.teardown(() => buildIndex.stop())
  const proxy = await startProxy(
    validateConfig(ProxyConfigSchema, {
      server: listen,
      origins,
      buildIndex: buildIndex.url,
      uploadChunkSize: 1 << 20,
    }),
    { logger },
  )
  t.teardown(() => proxy.stop())
  return { buildIndex, proxy }
}
