/**
 * An origin as it runs in production: the HTTP server plus its BitTorrent engine, which
 * seeds every blob the origin holds and announces to the tracker, under the host's caps
 * (config.bandwidth; GET/PUT /bandwidth on the origin's HTTP API changes them).
 */
import type { Server } from 'node:net'
import { HostBandwidth } from '../bandwidth/index.js'
import { Lifecycle, type Service, type Stopper, startAll } from '../lifecycle/index.js'
import type { Logger } from '../log/index.js'
import { createRegistry, type Registry } from '../metrics/index.js'
import type { OriginConfig } from '../origin/config.js'
import { OriginServer } from '../origin/server/index.js'
import { TorrentEngine } from '../torrent/index.js'
import { TrackerSet } from '../tracker/client/index.js'

export interface OriginNode extends Service {
  readonly origin: OriginServer
  readonly engine: TorrentEngine
  readonly bandwidth: HostBandwidth
}

/** Listeners bound by the caller beforehand (lib/lifecycle ReservedListener), used instead of the config's ports. */
export interface OriginNodeListeners {
  http?: Server
  peer?: Server
}

/** The engine, then the origin server: started in order, stopped in reverse (lib/lifecycle). */
export function createOriginNode(
  config: OriginConfig,
  deps: { logger: Logger; registry?: Registry; listeners?: OriginNodeListeners },
): OriginNode {
  const registry = deps.registry ?? createRegistry('origin', { processMetrics: true })
  const bandwidth = new HostBandwidth(config.bandwidth, { registry, logger: deps.logger })
  const engine = new TorrentEngine({
    ...config.peer, // listen address and the engine's tuning
    listener: deps.listeners?.peer,
    role: 'origin',
    bandwidth,
    peerSource: new TrackerSet(config.trackers.length > 0 ? config.trackers : [config.trackerUrl], {
      logger: deps.logger,
      registry,
    }),
    logger: deps.logger,
    registry,
  })
  const origin = new OriginServer(config, {
    logger: deps.logger,
    registry,
    seeder: engine,
    bandwidth,
    listener: deps.listeners?.http,
  })
  let stopper: Stopper | undefined
  const life = new Lifecycle('origin node', {
    start: async (signal) => {
      stopper = await startAll([engine, origin], signal)
    },
    stop: async () => {
      try {
        await stopper?.stop()
      } finally {
        bandwidth.close()
      }
    },
  })
  return {
    origin,
    engine,
    bandwidth,
    start: (signal) => life.start(signal),
    stop: () => life.stop(),
  }
}

export async function startOriginNode(
  config: OriginConfig,
  deps: { logger: Logger; registry?: Registry; listeners?: OriginNodeListeners },
): Promise<OriginNode> {
  const node = createOriginNode(config, deps)
  await node.start()
  return node
}
