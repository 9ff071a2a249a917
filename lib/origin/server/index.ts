/**
 * The origin daemon: a content-addressed blob server in a consistent-hash ring. It receives
 * chunked uploads, verifies them by sha256, acknowledges them once they are in its cache and
 * queued durably for write-back to the storage backend (written in the background, retried
 * until the backend has them), generates their metainfo and hands them to the seeder (the
 * BitTorrent engine, injected by the caller). The cache evicts idle blobs (never one waiting to
 * be written back); blobs missing from it are fetched back from the backend.
 */
import type { Server } from 'node:net'
import { networkInterfaces } from 'node:os'
import { join, resolve } from 'node:path'
import type { Backend } from '../../backend/index.js'
import { NamespaceBackends } from '../../backend/router.js'
import { type HostBandwidth, registerBandwidthRoutes } from '../../bandwidth/index.js'
import { ShoalError } from '../../errors/index.js'
import { HttpServer, RateLimiter } from '../../http/index.js'
import { Lifecycle, type Service } from '../../lifecycle/index.js'
import type { Logger } from '../../log/index.js'
import { createRegistry, type Registry } from '../../metrics/index.js'
import { BlobStore } from '../../store/index.js'
import type { OriginConfig } from '../config.js'
import type { Resolve } from './members.js'
import { originMetrics } from './metrics.js'
import { OpenUploads } from './open-uploads.js'
import { Repair } from './repair.js'
import { Replication, type RingView } from './replication.js'
import { OriginRing } from './ring.js'
import { registerRoutes } from './routes.js'
import { type Seeder, Seeds } from './seeder.js'
import { BlobService } from './service.js'
import { BuildIndexTagLookup, type TagLookup } from './tag-guard.js'

export { blobKey } from './keys.js'
export type { Seeder } from './seeder.js'
export type { TagLookup } from './tag-guard.js'

export interface OriginDeps {
  logger: Logger
  registry?: Registry
  /**
   * One storage backend for every namespace, instead of config.backend and config.namespaces
   * (default: fs under <dataDir>/backend).
   */
  backend?: Backend
  /** The BitTorrent engine (or anything with seed/remove); without one nothing is seeded. */
  seeder?: Seeder
  /** The engine's caps: served as GET/PUT /bandwidth when given (the caller owns it). */
  bandwidth?: HostBandwidth
  /** Which tags point at a digest (default: asks build-index at config.buildIndex). */
  tagLookup?: TagLookup
  /** An HTTP listener already bound (lib/lifecycle ReservedListener), used instead of config.server. */
  listener?: Server
  /** Resolves hashring.dns.name (default the system resolver); tests. */
  resolve?: Resolve
}

/** Abandoned uploads are looked for every ttl/4, at most hourly and at least every second. */
const PURGE_INTERVAL_MAX_MS = 60 * 60 * 1000

type Interfaces = ReturnType<typeof networkInterfaces>

/** Where the default `self` came from (logged at start). */
export type SelfSource = 'config' | 'server.host' | 'interface' | 'loopback'

const WILDCARDS = new Set(['', '0.0.0.0', '::', '[::]', '::0', '0:0:0:0:0:0:0:0'])

/**
 * The address this origin advertises in the hash ring when `self` is not configured; GET
 * /blobs/:digest/locations hands it to remote proxies and build-indexes, so it must be reachable
 * from other hosts. A specific bind address (`server.host`) is used as it is; on a wildcard bind
 * (0.0.0.0, ::) it is this host's first non-internal IPv4 address, and 127.0.0.1 only when the
 * host has none (then only clients on this host can follow the answer).
 */
export function defaultSelf(
  bindHost: string,
  port: number,
  interfaces: Interfaces = networkInterfaces(),
): { self: string; source: Exclude<SelfSource, 'config'> } {
  const host = bindHost.trim()
  if (!WILDCARDS.has(host)) {
    const shown = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
    return { self: `${shown}:${port}`, source: 'server.host' }
  }
  for (const addrs of Object.values(interfaces)) {
    for (const a of addrs ?? []) {
      // family is the number 4 on some Node 18 releases.
      const v4 = a.family === 'IPv4' || (a.family as unknown) === 4
      if (v4 && !a.internal) return { self: `${a.address}:${port}`, source: 'interface' }
    }
  }
  return { self: `127.0.0.1:${port}`, source: 'loopback' }
}

export class OriginServer implements Service {
  readonly store: BlobStore
  readonly backends: NamespaceBackends
  readonly registry: Registry
  private readonly log: Logger
  private readonly http: HttpServer
  private readonly service: BlobService
  private readonly seeds: Seeds
  private ring: OriginRing | undefined
  private readonly replication: Replication
  private readonly repair: Repair
  private readonly life: Lifecycle
  private readonly listener: Server | undefined
  private readonly resolve: Resolve | undefined
  private purgeTimer: NodeJS.Timeout | undefined
  private purging: Promise<unknown> | undefined
  private boundPort = 0
  private advertised: { self: string; source: SelfSource } | undefined

  constructor(
    readonly config: OriginConfig,
    deps: OriginDeps,
  ) {
    this.log = deps.logger.child({ component: 'origin' })
    this.listener = deps.listener
    this.resolve = deps.resolve
    this.life = new Lifecycle('origin', {
      start: (signal) => this.doStart(signal),
      stop: () => this.shutdown(),
    })
    this.registry = deps.registry ?? createRegistry('origin', { processMetrics: true })
    const dataDir = resolve(config.dataDir)
    this.store = new BlobStore(dataDir, { logger: deps.logger })
    // The default fs backend applies only when neither `backend` nor `namespaces` is given:
    // with `namespaces` alone, a namespace no entry matches is refused, not quietly kept on disk.
    this.backends = deps.backend
      ? NamespaceBackends.single(deps.backend)
      : NamespaceBackends.fromConfig(
          config.namespaces,
          config.backend ??
            (config.namespaces.length === 0 ? { type: 'fs', root: join(dataDir, 'backend') } : undefined),
        )
    this.seeds = new Seeds(this.store, deps.seeder, this.log)
    const uploads = new OpenUploads({
      max: config.maxOpenUploads,
      perClient: config.maxOpenUploadsPerClient,
      idleMs: config.uploadTtlSeconds * 1000,
    })
    const metrics = originMetrics(this.registry, uploads)
    this.service = new BlobService({
      store: this.store,
      backends: this.backends,
      seeds: this.seeds,
      uploads,
      tags: deps.tagLookup ?? new BuildIndexTagLookup(config.buildIndex),
      buildIndex: config.buildIndex,
      announce: `${config.trackerUrl.replace(/\/+$/, '')}/announce`,
      log: this.log,
      metrics,
      verifyIntervalMs: config.verifyIntervalSeconds * 1000,
      registry: this.registry,
      writeBack: config.writeBack,
      cache: config.cache,
    })
    // Replication and repair see the ring through this view (the ring is built at start).
    const ring = () => {
      if (!this.ring) throw new ShoalError('UNAVAILABLE', 'origin is not started')
      return this.ring
    }
    const view: RingView = {
      self: () => this.self,
      members: () => ring().nodes,
      owners: (digest) => ring().owners(digest),
      isOwner: (digest, member) => ring().isOwner(digest, member),
    }
    const work = this.service.work
    this.replication = new Replication({
      ring: view,
      store: this.store,
      replicaFrom: (ns, digest, from, waitMs) => this.service.replicaFrom(ns, digest, from, waitMs),
      work,
      log: this.log.child({ part: 'replication' }),
      registry: this.registry,
      attempts: config.replication.attempts,
      maxBackoffMs: config.replication.maxBackoffSeconds * 1000,
    })
    this.repair = new Repair({
      ring: view,
      signature: () =>
        (this.ring?.nodes ?? []).map((n) => `${n}=${this.ring?.health.isHealthy(n) ? 1 : 0}`).join(','),
      store: this.store,
      replication: this.replication,
      work,
      log: this.log.child({ part: 'repair' }),
      registry: this.registry,
      settings: config.repair,
    })
    this.http = new HttpServer({
      name: 'origin',
      logger: deps.logger,
      limits: config.server,
      registry: this.registry,
      // The backend is not asked: while it is down the origin serves from its cache and holds
      // pushes for write-back, so it stays ready (the write-back log and metrics tell the outage).
      readiness: async () => {
        if (!this.store.ready) throw new ShoalError('UNAVAILABLE', 'the blob store is not initialised yet')
      },
    })
    registerRoutes(this.http.router, {
      service: this.service,
      store: this.store,
      owners: (digest) => {
        if (!this.ring) throw new ShoalError('UNAVAILABLE', 'origin is not started')
        return this.ring.owners(digest)
      },
      uploadChunkLimit: config.uploadChunkLimit,
      reading: (digest) => this.service.cache.reading(digest),
      replication: this.replication,
      pushLimit: new RateLimiter('push', config.rateLimits.push, 'rateLimits.push'),
    })
    if (deps.bandwidth) registerBandwidthRoutes(this.http.router, deps.bandwidth)
  }

  /** Initialises the store, re-seeds cached blobs, then listens (lib/lifecycle contract). */
  start(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal)
  }

  /** Stops listening, aborts backend fetches, stops seeding. Idempotent. */
  stop(): Promise<void> {
    return this.life.stop()
  }

  /** Sweeps the cache now (evicts what the cache policy allows); resolves with how many blobs went. */
  sweepCache(): Promise<number> {
    return this.service.cache.sweep()
  }

  /** Asks for a repair pass now (as a membership change does); `repairIdle()` waits for it. */
  triggerRepair(reason = 'asked'): void {
    this.repair.trigger(reason)
  }

  /** Resolves once no repair pass is running or scheduled. */
  repairIdle(): Promise<void> {
    return this.repair.idle()
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

  /**
   * This origin's address in the hash ring: `self` from the config, else chosen at start by
   * defaultSelf() (the specific bind address, or this host's first non-internal IPv4).
   */
  get self(): string {
    if (this.config.self) return this.config.self
    return (
      this.advertised?.self ??
      defaultSelf(this.config.server.host, this.boundPort || this.config.server.port).self
    )
  }

  private async doStart(signal: AbortSignal | undefined): Promise<void> {
    // First: a missing bucket or wrong credentials must stop the start with one line that
    // names the problem, not surface later as failed uploads.
    await this.backends.check(signal)
    this.seeds.open()
    await this.store.init()
    await this.service.start()
    const ttlMs = this.config.uploadTtlSeconds * 1000
    await this.store.purgeUploads(ttlMs)
    this.purgeTimer = setInterval(
      () => {
        if (this.purging) return
        // Known uploads by their last chunk; files nobody adopted since a restart by age.
        this.purging = Promise.all([this.service.uploads.expire(), this.store.purgeUploads(ttlMs)])
          .catch((err) => this.log.warn({ err }, 'cannot purge abandoned uploads'))
          .finally(() => {
            this.purging = undefined
          })
      },
      Math.min(PURGE_INTERVAL_MAX_MS, Math.max(1000, ttlMs / 4)),
    )
    this.purgeTimer.unref()
    await this.service.reseed()
    signal?.throwIfAborted()
    const addr = await this.http.start(this.listener ?? this.config.server.port, this.config.server.host)
    this.boundPort = addr.port
    this.advertised = this.config.self
      ? { self: this.config.self, source: 'config' }
      : defaultSelf(this.config.server.host, addr.port)
    if (this.advertised.source === 'loopback') {
      this.log.warn(
        { self: this.self, host: this.config.server.host },
        'no non-internal IPv4 address found: advertising 127.0.0.1, which other hosts cannot reach; set "self"',
      )
    }
    this.ring = new OriginRing(this.config.hashring, this.self, {
      logger: this.log,
      registry: this.registry,
      resolve: this.resolve,
    })
    await this.ring.start()
    this.repair.start()
    // Members may have changed while this origin was down (a static list edited, DNS): a pass
    // at start makes the owners of what it holds, as it sees them now, hold it.
    this.repair.trigger('origin started')
    this.log.info(
      {
        url: this.url,
        self: this.self,
        selfFrom: this.advertised.source,
        backend: this.backends.describe(),
        dataDir: this.store.root,
        seeding: this.seeds.count,
        ring: this.ring.nodes.length,
      },
      'origin started',
    )
  }

  private async shutdown(): Promise<void> {
    this.ring?.stop()
    // Stopped with the service: its work signal ends a pass's copies.
    const repairing = this.repair.stop()
    await this.http.stop()
    if (this.purgeTimer) clearInterval(this.purgeTimer)
    this.purgeTimer = undefined
    // Aborts and waits for commits, appends and backend transfers, so nothing is seeded later.
    await this.service.stop()
    await repairing
    await this.purging
    await this.seeds.close()
  }
}
