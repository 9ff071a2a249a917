/**
 * An origin as it runs in production: the HTTP server plus its BitTorrent engine, which
 * seeds every blob the origin holds and announces to the tracker, under the host's caps
 * (config.bandwidth; GET/PUT /bandwidth on the origin's HTTP API changes them).
 */
import { HostBandwidth } from '../bandwidth/index.js'
import type { Logger } from '../log/index.js'
import { createRegistry, type Registry } from '../metrics/index.js'
import type { OriginConfig } from '../origin/config.js'
import { OriginServer } from '../origin/server/index.js'
import { TorrentEngine } from '../torrent/index.js'
import { TrackerSet } from '../tracker/client/index.js'

export interface OriginNode {
  readonly origin: OriginServer
  readonly engine: TorrentEngine
  readonly bandwidth: HostBandwidth
  stop(): Promise<void>
}

export async function startOriginNode(
  config: OriginConfig,
  deps: { logger: Logger; registry?: Registry },
): Promise<OriginNode> {
  const registry = deps.registry ?? createRegistry('origin', { processMetrics: true })
  const bandwidth = new HostBandwidth(config.bandwidth, { registry, logger: deps.logger })
  const engine = new TorrentEngine({
    ...config.peer, // listen address and the engine's tuning
    role: 'origin',
    bandwidth,
    peerSource: new TrackerSet(config.trackers.length > 0 ? config.trackers : [config.trackerUrl], {
      logger: deps.logger,
      registry,
    }),
    logger: deps.logger,
    registry,
  })
  try {
    await engine.start()
  } catch (err) {
    bandwidth.close()
    throw err
  }
  const origin = new OriginServer(config, { logger: deps.logger, registry, seeder: engine, bandwidth })
  try {
    await origin.start()
  } catch (err) {
    await engine.stop()
    bandwidth.close()
    throw err
  }
  let stopped = false
  return {
    origin,
    engine,
    bandwidth,
    async stop() {
      if (stopped) return
      stopped = true
      await origin.stop()
      await engine.stop()
      bandwidth.close()
    },
  }
}
