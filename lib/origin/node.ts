/**
 * An origin as it runs in production, in `shoal herd` and in shoal-origin alike: the blob
 * server (store, backend, HTTP API; lib/origin/server) plus the BitTorrent engine that seeds
 * every blob it holds and announces to the tracker, under the host's caps (config.bandwidth;
 * GET/PUT /bandwidth on the origin's HTTP API changes them). The server does not import
 * lib/torrent (tests run it with a fake seeder): this is the one place the two are wired.
 */
import type { Server } from 'node:net'
import { HostBandwidth } from '../bandwidth/index.js'
import { Lifecycle, type Service, type Stopper, startAll } from '../lifecycle/index.js'
import type { Logger } from '../log/index.js'
import { createRegistry, type Registry } from '../metrics/index.js'
import { TorrentEngine } from '../torrent/index.js'
import { TrackerSet } from '../tracker/client/index.js'
import type { OriginConfig } from './config.js'
import { OriginServer } from './server/index.js'

export interface OriginNodeDeps {
  logger: Logger
  registry?: Registry
  /** Listeners bound by the caller beforehand (lib/lifecycle ReservedListener), used instead of the config's ports. */
  listeners?: { http?: Server; peer?: Server }
}

/** The engine, then the origin server: started in order, stopped in reverse (lib/lifecycle). */
export class OriginNode implements Service {
  readonly origin: OriginServer
  readonly engine: TorrentEngine
  readonly bandwidth: HostBandwidth
  readonly #life: Lifecycle

  constructor(config: OriginConfig, deps: OriginNodeDeps) {
    const { logger } = deps
    const registry = deps.registry ?? createRegistry('origin', { processMetrics: true })
    this.bandwidth = new HostBandwidth(config.bandwidth, { registry, logger })
    this.engine = new TorrentEngine({
      ...config.peer, // listen address and the engine's tuning
      listener: deps.listeners?.peer,
      role: 'origin',
      bandwidth: this.bandwidth,
      peerSource: new TrackerSet(config.trackers.length > 0 ? config.trackers : [config.trackerUrl], {
        logger,
        registry,
      }),
      logger,
      registry,
    })
    this.origin = new OriginServer(config, {
      logger,
      registry,
      seeder: this.engine,
      bandwidth: this.bandwidth,
      listener: deps.listeners?.http,
    })
    let stopper: Stopper | undefined
    this.#life = new Lifecycle('origin node', {
      start: async (signal) => {
        stopper = await startAll([this.engine, this.origin], signal)
      },
      stop: async () => {
        try {
          await stopper?.stop()
        } finally {
          this.bandwidth.close()
        }
      },
    })
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.#life.start(signal)
  }

  stop(): Promise<void> {
    return this.#life.stop()
  }
}
