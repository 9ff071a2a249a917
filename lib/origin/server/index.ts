/**
 * The origin daemon: a content-addressed blob server in a consistent-hash ring. It receives
 * chunked uploads, verifies them by sha256, writes them back to the storage backend before
 * acknowledging, generates their metainfo and hands them to the seeder (the BitTorrent engine,
 * injected by the caller). Blobs missing from the cache are fetched back from the backend.
 */
import { join, resolve } from 'node:path'
import { type Backend, createBackend } from '../../backend/index.js'
import { ShoalError } from '../../errors/index.js'
import { HashRing } from '../../hashring/index.js'
import { HttpServer } from '../../http/index.js'
import type { Logger } from '../../log/index.js'
import { counter, createRegistry, type Registry } from '../../metrics/index.js'
import { BlobStore } from '../../store/index.js'
import type { OriginConfig } from '../config.js'
import { registerRoutes } from './routes.js'
import { type Seeder, Seeds } from './seeder.js'
import { BlobService, type OriginMetrics } from './service.js'

export type { Seeder, SeedStorage } from './seeder.js'
export { blobKey, checkNamespace } from './service.js'

export interface OriginDeps {
  logger: Logger
  registry?: Registry
  /** Storage backend; built from config.backend (default fs under <dataDir>/backend) when absent. */
  backend?: Backend
  /** The BitTorrent engine (or anything with seed/remove); without one nothing is seeded. */
  seeder?: Seeder
}

const PURGE_INTERVAL_MS = 60 * 60 * 1000

export class OriginServer {
  readonly store: BlobStore
  readonly backend: Backend
  readonly registry: Registry
  private readonly log: Logger
  private readonly http: HttpServer
  private readonly service: BlobService
  private readonly seeds: Seeds
  private ring: HashRing | undefined
  private starting: Promise<void> | undefined
  private stopping: Promise<void> | undefined
  private purgeTimer: NodeJS.Timeout | undefined
  private boundPort = 0

  constructor(
    readonly config: OriginConfig,
    deps: OriginDeps,
  ) {
    this.log = deps.logger.child({ component: 'origin' })
    this.registry = deps.registry ?? createRegistry('origin')
    const dataDir = resolve(config.dataDir)
    this.store = new BlobStore(dataDir, { logger: deps.logger })
    this.backend =
      deps.backend ?? createBackend(config.backend ?? { type: 'fs', root: join(dataDir, 'backend') })
    this.seeds = new Seeds(this.store, deps.seeder, this.log)
    const metrics: OriginMetrics = {
      committed: counter(
        this.registry,
        'shoal_origin_uploads_committed_total',
        'Uploads verified and stored',
      ),
      uploadedBytes: counter(
        this.registry,
        'shoal_origin_uploaded_bytes_total',
        'Bytes of committed uploads',
      ),
      mismatches: counter(
        this.registry,
        'shoal_origin_digest_mismatches_total',
        'Blobs whose sha256 did not match',
        ['source'],
      ),
      fetches: counter(
        this.registry,
        'shoal_origin_backend_fetches_total',
        'Blobs fetched from the backend into the cache',
        ['result'],
      ),
    }
    this.service = new BlobService({
      store: this.store,
      backend: this.backend,
      seeds: this.seeds,
      announce: `${config.trackerUrl.replace(/\/+$/, '')}/announce`,
      log: this.log,
      metrics,
    })
    this.http = new HttpServer({
      name: 'origin',
      logger: deps.logger,
      registry: this.registry,
      readiness: async () => {
        if (!this.store.ready) throw new ShoalError('UNAVAILABLE', 'the blob store is not initialised yet')
        await this.backend.stat('_shoal/readiness')
      },
    })
    registerRoutes(this.http.router, {
      service: this.service,
      store: this.store,
      ring: () => {
        if (!this.ring) throw new ShoalError('UNAVAILABLE', 'origin is not started')
        return this.ring
      },
      replicas: config.hashring.replicas,
      uploadChunkLimit: config.uploadChunkLimit,
    })
  }

  /** Initialises the store, re-seeds cached blobs, then listens. Idempotent. */
  start(): Promise<void> {
    this.starting ??= this.doStart().catch(async (err) => {
      await this.shutdown()
      this.starting = undefined
      throw err
    })
    return this.starting
  }

  /** Stops listening, aborts backend fetches, stops seeding. Idempotent. */
  stop(): Promise<void> {
    if (!this.starting) return Promise.resolve()
    this.stopping ??= (async () => {
      await this.starting?.catch(() => undefined)
      await this.shutdown()
    })()
    return this.stopping
  }

  /** http://host:port actually bound (a wildcard bind is reported as loopback). */
  get url(): string {
    const host = this.config.server.host
    const shown =
      host === '0.0.0.0' || host === ''
        ? '127.0.0.1'
        : host === '::'
          ? '[::1]'
          : host.includes(':')
            ? `[${host}]`
            : host
    return `http://${shown}:${this.boundPort || this.config.server.port}`
  }

  /** This origin's address in the hash ring. */
  get self(): string {
    return this.config.self ?? `127.0.0.1:${this.boundPort || this.config.server.port}`
  }

  /** Reads or generates the metainfo of a cached blob (for the caller wiring the engine). */
  metaInfo(digest: Parameters<BlobService['ensureMetaInfo']>[0]) {
    return this.service.ensureMetaInfo(digest)
  }

  private async doStart(): Promise<void> {
    await this.store.init()
    const ttlMs = this.config.uploadTtlSeconds * 1000
    await this.store.purgeUploads(ttlMs)
    this.purgeTimer = setInterval(() => {
      this.store.purgeUploads(ttlMs).catch((err) => this.log.warn({ err }, 'cannot purge abandoned uploads'))
    }, PURGE_INTERVAL_MS)
    this.purgeTimer.unref()
    await this.service.reseed()
    const addr = await this.http.start(this.config.server.port, this.config.server.host)
    this.boundPort = addr.port
    const nodes = this.config.hashring.nodes.length > 0 ? this.config.hashring.nodes : [this.self]
    this.ring = new HashRing(nodes)
    if (!this.ring.has(this.self)) {
      this.log.warn(
        { self: this.self, nodes },
        'this origin is not in its own hash ring: set "self" to its entry in hashring.nodes',
      )
    }
    this.log.info(
      {
        url: this.url,
        self: this.self,
        backend: this.backend.kind,
        dataDir: this.store.root,
        seeding: this.seeds.count,
      },
      'origin started',
    )
  }

  private async shutdown(): Promise<void> {
    await this.http.stop()
    if (this.purgeTimer) clearInterval(this.purgeTimer)
    this.purgeTimer = undefined
    await this.service.stop()
    this.seeds.removeAll()
  }
}

export async function startOrigin(config: OriginConfig, deps: OriginDeps): Promise<OriginServer> {
  const server = new OriginServer(config, deps)
  await server.start()
  return server
}
