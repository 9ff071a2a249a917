/**
 * shoal-tracker: the BitTorrent HTTP announce with Shoal's ordered handout, and metainfo for a
 * digest (fetched from the origins). The announce handler is ours, on our HttpServer, rather than
 * bittorrent-tracker's Server: its swarm hands peers out at random and its parser is unbounded.
 * The configured origins are health-checked (originHealth): metainfo is asked of the healthy
 * owners first, and an origin found down is left out of handouts until it recovers.
 */
import type { ServerResponse } from 'node:http'
import { Digest, parseNamespace } from '../../core/index.js'
import { ShoalError, toShoalError } from '../../errors/index.js'
import { HttpServer, RateLimiter } from '../../http/index.js'
import { Lifecycle, type Service } from '../../lifecycle/index.js'
import type { Logger } from '../../log/index.js'
import { counter, createRegistry, Gauge, type Registry } from '../../metrics/index.js'
import { OriginClient, type OriginClientFactory, OriginCluster } from '../../origin/client/index.js'
import type { TrackerConfig } from '../config.js'
import { createPeerStore } from '../peerstore/index.js'
import { type PeerStore, peerClass } from '../peerstore/types.js'
import { type AnnounceEvent, encodeAnnounceResponse, encodeFailure, parseAnnounce } from './announce.js'
import { CorruptReports } from './corrupt.js'
import { Announcer, OriginSet } from './handout.js'
import { MetainfoService } from './metainfo.js'

export type { AnnounceEvent, AnnounceRequest, AnnounceResponse, ParseOptions } from './announce.js'
export {
  decodeQuery,
  encodeAnnounceResponse,
  encodeFailure,
  ipToBytes,
  MAX_QUERY_BYTES,
  normaliseIp,
  parseAnnounce,
} from './announce.js'
export {
  type AnnounceInput,
  type AnnounceOutcome,
  Announcer,
  OriginSet,
  orderPeers,
  type Self,
} from './handout.js'

export interface TrackerDeps {
  logger: Logger
  registry?: Registry
  /** A shared store (e.g. in tests); the tracker then does not close it. Default: from config. */
  peerStore?: PeerStore
  /** Builds the client of one origin from its HTTP address, configured or an owner (tests). */
  originClientFor?: OriginClientFactory
  /** Random source for the handout shuffle (tests). */
  random?: () => number
}

/** A counter with its labels bound once (prom-client's labels()). */
type CounterChild = { inc(n?: number): void }
const CLASS_NAMES = ['origin', 'seeder', 'leecher'] as const

export class TrackerServer implements Service {
  readonly registry: Registry
  private readonly log: Logger
  private readonly http: HttpServer
  private readonly metainfo: MetainfoService
  private readonly corrupt: CorruptReports
  private readonly cluster: OriginCluster | undefined
  private store: PeerStore | undefined
  private announcer: Announcer | undefined
  private origins: OriginSet | undefined
  private readonly life = new Lifecycle('tracker', {
    start: (signal) => this.doStart(signal),
    stop: () => this.shutdown(),
  })
  private boundUrl: string | undefined

  constructor(
    readonly config: TrackerConfig,
    private readonly deps: TrackerDeps,
  ) {
    this.log = deps.logger.child({ component: 'tracker' })
    this.registry = deps.registry ?? createRegistry('tracker', { processMetrics: true })
    const announces = counter(
      this.registry,
      'shoal_tracker_announces_total',
      'Announces by result (ok, rejected, error) and event',
      ['result', 'event'],
    )
    const handedOut = counter(
      this.registry,
      'shoal_tracker_peers_handed_out_total',
      'Peers handed out, by class',
      ['class'],
    )
    const [toOrigin, toSeeder, toLeecher] = CLASS_NAMES.map((c) => handedOut.labels({ class: c })) as [
      CounterChild,
      CounterChild,
      CounterChild,
    ]
    const okBy: Record<AnnounceEvent, CounterChild> = {
      '': announces.labels({ result: 'ok', event: 'none' }),
      started: announces.labels({ result: 'ok', event: 'started' }),
      completed: announces.labels({ result: 'ok', event: 'completed' }),
      stopped: announces.labels({ result: 'ok', event: 'stopped' }),
    }
    const metainfoRequests = counter(
      this.registry,
      'shoal_tracker_metainfo_requests_total',
      'Metainfo requests by result',
      ['result'],
    )
    this.registerSwarmGauges()

    this.http = new HttpServer({
      name: 'tracker',
      logger: deps.logger,
      limits: config.server,
      registry: this.registry,
      readiness: () => {
        if (!this.announcer) throw new ShoalError('UNAVAILABLE', 'tracker is starting')
      },
    })
    const makeClient =
      deps.originClientFor ??
      ((addr: string) => new OriginClient(addr, { timeoutMs: config.originTimeoutMs }))
    this.cluster =
      config.origins.length > 0
        ? new OriginCluster(
            config.origins.map((o) => o.http),
            makeClient,
            { health: config.originHealth, logger: this.log, registry: this.registry },
          )
        : undefined
    this.metainfo = new MetainfoService({
      origins: this.cluster,
      cacheSize: config.metainfoCacheSize,
      logger: this.log,
      onResult: (result) => metainfoRequests.inc({ result }),
    })

    this.corrupt = new CorruptReports({
      origins: config.origins,
      client: makeClient,
      forget: (digest) => this.metainfo.forget(digest),
      logger: this.log,
      reports: counter(
        this.registry,
        'shoal_tracker_corrupt_reports_total',
        'Bad pieces from origins that agents reported, by the origin verdict',
        ['result'],
      ),
    })
    this.corrupt.register(this.http.router)

    const announceLimit = new RateLimiter('announce', config.rateLimits.announce, 'rateLimits.announce')
    this.http.router.get('/announce', async ({ req, res }) => {
      // Refused as a Shoal JSON 429 with Retry-After (a non-200 answer: the agent tries its next tracker).
      // Origins seed every blob they hold, one announce per blob per interval: never limited.
      if (!this.origins?.hasIp(req.socket.remoteAddress)) announceLimit.check(req, res)
      const rawUrl = req.url ?? ''
      const q = rawUrl.indexOf('?')
      let parsed: ReturnType<typeof parseAnnounce>
      try {
        parsed = parseAnnounce(q < 0 ? '' : rawUrl.slice(q + 1), {
          remoteAddress: req.socket.remoteAddress,
          maxNumWant: config.maxNumWant,
          defaultNumWant: config.defaultNumWant,
          trustClientIp: config.trustClientIp,
        })
      } catch (err) {
        announces.inc({ result: 'rejected', event: 'unknown' })
        const e = toShoalError(err, 'BAD_ANNOUNCE')
        this.log.debug({ reason: e.message, from: req.socket.remoteAddress }, 'announce rejected')
        sendBencoded(res, encodeFailure(e.message))
        return
      }
      const event = parsed.event || 'none'
      const announcer = this.announcer
      try {
        if (!announcer) throw new ShoalError('UNAVAILABLE', 'tracker is not started')
        const outcome = await announcer.announce(parsed)
        // One inc per class, not per peer, on children bound once: label lookups were a
        // visible share of an announce.
        let origins = 0
        let seeders = 0
        for (const p of outcome.peers) {
          const c = peerClass(p)
          if (c === 0) origins++
          else if (c === 1) seeders++
        }
        const leechers = outcome.peers.length - origins - seeders
        if (origins) toOrigin.inc(origins)
        if (seeders) toSeeder.inc(seeders)
        if (leechers) toLeecher.inc(leechers)
        okBy[parsed.event].inc()
        sendBencoded(
          res,
          encodeAnnounceResponse({
            interval: config.announceInterval,
            minInterval: config.minInterval,
            complete: outcome.complete,
            incomplete: outcome.incomplete,
            peers: outcome.peers,
            compact: parsed.compact,
            noPeerId: parsed.noPeerId,
          }),
        )
        this.log.debug(
          {
            infoHash: parsed.infoHashHex,
            peer: `${parsed.ip}:${parsed.port}`,
            event,
            handedOut: outcome.peers.length,
          },
          'announce',
        )
      } catch (err) {
        // Stock clients understand only a failure reason, never our JSON errors.
        announces.inc({ result: 'error', event })
        const e = toShoalError(err)
        this.log.warn({ code: e.code, err: e.message, infoHash: parsed.infoHashHex }, 'announce failed')
        sendBencoded(res, encodeFailure(`tracker error: ${e.message}; retry later`))
      }
    })

    this.http.router.get('/namespace/:ns/blobs/:digest/metainfo', async ({ params, res }) => {
      const ns = parseNamespace(params.ns ?? '')
      const digest = Digest.parse(params.digest ?? '')
      const raw = await this.metainfo.get(ns, digest)
      res.writeHead(200, { 'content-type': 'application/x-bittorrent', 'content-length': raw.length })
      res.end(raw)
    })
  }

  /** Binds the HTTP server (lib/lifecycle contract: idempotent, undone when it fails). */
  start(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal)
  }

  /** Stops serving, aborts metainfo fetches, closes the store it owns. Idempotent. */
  stop(): Promise<void> {
    return this.life.stop()
  }

  private async shutdown(): Promise<void> {
    this.announcer = undefined
    this.boundUrl = undefined
    await this.http.stop()
    await this.cluster?.stop()
    this.metainfo.close()
    const store = this.store
    this.store = undefined
    if (store && store !== this.deps.peerStore) await store.close()
  }

  /** `http://host:port` actually bound (loopback when bound to every interface). */
  get url(): string {
    if (!this.boundUrl) throw new ShoalError('UNAVAILABLE', 'the tracker is not started; call start() first')
    return this.boundUrl
  }

  private async doStart(signal: AbortSignal | undefined): Promise<void> {
    const origins = await OriginSet.resolve(
      this.config.origins.map((o) => o.peer),
      this.log,
    )
    this.origins = origins
    await this.corrupt.start()
    const originDown = await this.originDown()
    await this.cluster?.start()
    this.store = this.deps.peerStore ?? (await createPeerStore(this.config.peerStore))
    signal?.throwIfAborted()
    const addr = await this.http.start(this.config.server.port, this.config.server.host)
    this.announcer = new Announcer(this.store, origins, this.config.peerTtlSeconds * 1000, {
      random: this.deps.random,
      originDown,
    })
    const host = addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address === '::' ? '::1' : addr.address
    this.boundUrl = `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`
    this.log.info(
      {
        url: this.boundUrl,
        origins: this.config.origins.length,
        originPeers: origins.size,
        peerStore: this.store.kind,
        interval: this.config.announceInterval,
        peerTtlSeconds: this.config.peerTtlSeconds,
      },
      'tracker started',
    )
  }

  /** Whether the origin at a peer address is one the health checks find down (undefined: no origins). */
  private async originDown(): Promise<((ip: string, port: number) => boolean) | undefined> {
    const health = this.cluster?.health
    if (!health) return undefined
    const byPeer = await Promise.all(
      this.config.origins.map(async (o) => ({ peers: await OriginSet.resolve([o.peer]), http: o.http })),
    )
    return (ip, port) => {
      const origin = byPeer.find((o) => o.peers.has(ip, port))
      return origin !== undefined && !health.isHealthy(origin.http)
    }
  }

  /** Swarm sizes, read from the store when Prometheus scrapes (never per announce). */
  private registerSwarmGauges(): void {
    const self = this
    if (!this.registry.getSingleMetric('shoal_tracker_swarms')) {
      new Gauge({
        name: 'shoal_tracker_swarms',
        help: 'Infohashes with at least one live peer',
        registers: [this.registry],
        async collect() {
          const stats = await self.store?.stats().catch(() => undefined)
          if (stats) this.set(stats.swarms)
        },
      })
    }
    if (!this.registry.getSingleMetric('shoal_tracker_peers')) {
      new Gauge({
        name: 'shoal_tracker_peers',
        help: 'Live peers over all swarms, by class',
        labelNames: ['class'],
        registers: [this.registry],
        async collect() {
          const stats = await self.store?.stats().catch(() => undefined)
          if (!stats) return
          this.set({ class: 'origin' }, stats.origins)
          this.set({ class: 'seeder' }, stats.seeders)
          this.set({ class: 'leecher' }, stats.leechers)
        },
      })
    }
  }
}

export async function startTracker(config: TrackerConfig, deps: TrackerDeps): Promise<TrackerServer> {
  const server = new TrackerServer(config, deps)
  await server.start()
  return server
}

function sendBencoded(res: ServerResponse, body: Buffer): void {
  if (res.headersSent || res.destroyed) return
  res.writeHead(200, {
    'content-type': 'text/plain',
    'content-length': body.length,
    'cache-control': 'no-store',
  })
  res.end(body)
}
