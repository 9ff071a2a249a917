/**
 * An origin as it runs in production: the HTTP server plus its BitTorrent engine, which
 * seeds every blob the origin holds and announces to the tracker.
 */
import type { Logger } from '../log/index.js'
import { createRegistry, type Registry } from '../metrics/index.js'
import type { OriginConfig } from '../origin/config.js'
import { OriginServer } from '../origin/server/index.js'
import { TorrentEngine } from '../torrent/index.js'
import { TrackerSet } from '../tracker/client/index.js'

export interface OriginNode {
  readonly origin: OriginServer
  readonly engine: TorrentEngine
  stop(): Promise<void>
}

export async function startOriginNode(
  config: OriginConfig,
  deps: { logger: Logger; registry?: Registry },
): Promise<OriginNode> {
  const registry = deps.registry ?? createRegistry('origin')
  const engine = new TorrentEngine({
    role: 'origin',
    host: config.peer.host,
    port: config.peer.port,
    peerSource: new TrackerSet(config.trackers.length > 0 ? config.trackers : [config.trackerUrl], {
      logger: deps.logger,
      registry,
    }),
    logger: deps.logger,
    registry,
  })
  await engine.start()
  const origin = new OriginServer(config, { logger: deps.logger, registry, seeder: engine })
  try {
    await origin.start()
  } catch (err) {
    await engine.stop()
    throw err
  }
  let stopped = false
  return {
    origin,
    engine,
    async stop() {
      if (stopped) return
      stopped = true
      await origin.stop()
      await engine.stop()
    },
  }
}
