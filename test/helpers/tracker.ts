/**
 * A tracker for integration tests: on loopback port 0, silent, stopped when the test ends, with
 * a client and `announce(n, port, left, extra)` for numbered peers of one infohash.
 */
import { validateConfig } from '../../lib/config/index.js'
import type { InfoHash } from '../../lib/core/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { TrackerClient } from '../../lib/tracker/client/index.js'
import { type TrackerConfig, TrackerConfigSchema } from '../../lib/tracker/config.js'
import { startTracker, type TrackerServer } from '../../lib/tracker/server/index.js'

type Teardown = { teardown(fn: () => unknown): void }

export interface AnnounceExtra {
  event?: 'started' | 'completed' | 'stopped'
  numwant?: number
}

export interface TestTracker {
  tracker: TrackerServer
  config: TrackerConfig
  client: TrackerClient
  /** Peer number n (its peer id from `peerIdPrefix`) announces at `port`; `started` unless told. */
  announce(
    n: number,
    port: number,
    left?: number,
    extra?: AnnounceExtra,
  ): ReturnType<TrackerClient['announce']>
}

/** Peer id of peer number n: the 8-byte client prefix, then n in 12 digits. */
export const peerIdOf = (prefix: string, n: number) => Buffer.from(`${prefix}${String(n).padStart(12, '0')}`)

export async function startTestTracker(
  t: Teardown,
  o: { infoHash: InfoHash; peerIdPrefix: string; settings: Record<string, unknown> },
): Promise<TestTracker> {
  const config = validateConfig(TrackerConfigSchema, {
    server: { host: '127.0.0.1', port: 0 },
    ...o.settings,
  })
  const tracker = await startTracker(config, { logger: silentLogger() })
  t.teardown(() => tracker.stop())
  const client = new TrackerClient(tracker.url, { timeoutMs: 5000 })
  const announce = (n: number, port: number, left = 100, extra: AnnounceExtra = {}) =>
    client.announce({
      infoHash: o.infoHash,
      peerId: peerIdOf(o.peerIdPrefix, n),
      port,
      uploaded: 0,
      downloaded: 0,
      left,
      event: 'started',
      ...extra,
    })
  return { tracker, config, client, announce }
}
