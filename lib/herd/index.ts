/**
 * Starts tracker, build-index, origin (with its engine) and proxy in one process, wired to
 * each other, and stops them in reverse order. This is the embedded default: local-folder
 * backend, in-memory peer store, no external services.
 */
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { KindRegistry } from '../apiserver/registry.js'
import { ApiServer, ApiServerConfigSchema } from '../apiserver/server/index.js'
import { BuildIndexConfigSchema } from '../build-index/config.js'
import { BuildIndexServer } from '../build-index/server/index.js'
import { deepMerge, validateConfig } from '../config/index.js'
import { ShoalError } from '../errors/index.js'
import {
  EventKind,
  EventPruner,
  type EventRecorder,
  EventsConfigSchema,
  forService,
  LogEventRecorder,
  QueuedEventRecorder,
  recordJobTransition,
  StoreEventSink,
} from '../events/index.js'
import type { JobController } from '../jobs/controller.js'
import { jobEvent } from '../jobs/events.js'
import { type JobsPartOptions, jobControllerPart, loopbackUrl } from '../jobs/herd.js'
import { registerJobKinds } from '../jobs/register.js'
import {
  Lifecycle,
  type Part,
  ReservedListener,
  type Service,
  type Stopper,
  startAll,
} from '../lifecycle/index.js'
import type { Logger } from '../log/index.js'
import { createRegistry } from '../metrics/index.js'
import { OriginConfigSchema } from '../origin/config.js'
import { OriginNode } from '../origin/node.js'
import { PluginHost } from '../plugins/index.js'
import { ProxyConfigSchema } from '../proxy/config.js'
import { ProxyServer } from '../proxy/server/index.js'
import { TrackerConfigSchema } from '../tracker/config.js'
import { TrackerServer } from '../tracker/server/index.js'
import { HERD_PORT_OFFSETS, type HerdConfig } from './config.js'

export interface Herd extends Service {
  /** Valid once start() resolved (startHerd resolves after it). */
  readonly urls: { proxy: string; origin: string; tracker: string; buildIndex: string; apiserver?: string }
  /** The resource API, unless `apiserver.enabled` is false. */
  readonly apiserver: ApiServer | undefined
  /** The job controller (lib/jobs), running with the resource API. */
  readonly jobs: JobController | undefined
  readonly originPeerPort: number
  readonly originNode: OriginNode
  /**
   * The event log's recorder (docs/events.md): writes into the apiserver's store, or only logs
   * when the API or `events.enabled` is off. The job controller records its transitions here
   * (lib/events recordJobTransition).
   */
  readonly events: EventRecorder
}

/**
 * Bind first, then wire: the origin's two listeners are bound before anything starts (the
 * tracker and build-index need the origin's addresses, and the origin theirs), then tracker
 * and build-index start and their bound ports go into the origin's config, then the origin
 * takes its listeners, then the proxy. With basePort 0 every port is one the kernel picked
 * and kept, never a probed port released for a later bind.
 */
export interface HerdDeps {
  logger: Logger
  registry?: KindRegistry
  /** The job controller's seam for the event log (job and target transitions). */
  jobs?: JobsPartOptions
}

export function createHerd(config: HerdConfig, deps: HerdDeps): Herd {
  const host = config.advertiseHost
  const bind = config.bindHost
  const dataDir = resolve(config.dataDir)
  const addr = (port: number) => `${host}:${port}`
  const log = { level: config.log.level }
  const backend = { type: 'fs', root: join(dataDir, 'backend') }
  // A section that names its own storage (origin: backend and/or namespaces; build-index:
  // backend) gets exactly that, as the standalone daemon would: merging the herd's folder
  // backend into an S3 one would mix their keys (and the strict schema refuses the mix).
  const originStorage =
    config.origin.backend !== undefined || hasEntries(config.origin.namespaces) ? {} : { backend }
  const tagStorage = config.buildIndex.backend !== undefined ? {} : { backend }
  const portOf = (name: keyof typeof HERD_PORT_OFFSETS) =>
    config.basePort === 0 ? 0 : config.basePort + HERD_PORT_OFFSETS[name]

  // The origin section may set its own ports, as any other setting.
  const originPort = (key: 'server' | 'peer', name: 'originHttp' | 'originPeer'): number => {
    const port = (config.origin[key] as { port?: unknown } | undefined)?.port
    return typeof port === 'number' ? port : portOf(name)
  }
  const originPeer = new ReservedListener('origin peer listener', bind, originPort('peer', 'originPeer'))
  const originHttp = new ReservedListener('origin', bind, originPort('server', 'originHttp'))
  const originAddr = () => addr(originHttp.port)
  let tracker: TrackerServer | undefined
  let buildIndex: BuildIndexServer | undefined
  let originNode: OriginNode | undefined
  let proxy: ProxyServer | undefined
  let stopper: Stopper | undefined
  const { enabled: apiEnabled = true, ...apiSection } = config.apiserver as { enabled?: unknown }
  if (typeof apiEnabled !== 'boolean')
    throw new ShoalError('CONFIG_INVALID', 'herd config "apiserver.enabled" must be true or false')
  const eventsConfig = section(EventsConfigSchema, 'events', config.events, {})
  const registry = deps.registry ?? new KindRegistry()
  const storeEvents = apiEnabled && eventsConfig.enabled
  if (
    storeEvents &&
    !registry.kinds().some((k) => k.group === EventKind.group && k.plural === EventKind.plural)
  )
    registry.register(EventKind)
  const apiserver = apiEnabled
    ? new ApiServer(
        section(ApiServerConfigSchema, 'apiserver', apiSection, {
          server: { host: bind, port: portOf('apiserver') },
          ...((apiSection as { store?: unknown }).store === undefined
            ? { store: { type: 'file', dir: join(dataDir, 'apiserver') } }
            : {}),
        }),
        { logger: deps.logger, registry: registerJobKinds(registry) },
      )
    : undefined
  // The proxy's registry is made here so its /metrics also shows the event log's counters.
  const proxyRegistry = createRegistry('proxy', { processMetrics: true })
  const recorder =
    storeEvents && apiserver
      ? new QueuedEventRecorder(new StoreEventSink(apiserver.store), {
          logger: deps.logger,
          service: 'herd',
          registry: proxyRegistry,
          maxQueued: eventsConfig.queue.maxQueued,
          flushMs: eventsConfig.queue.flushMs,
        })
      : new LogEventRecorder({ logger: deps.logger, service: 'herd' })
  const pruner =
    storeEvents && apiserver
      ? new EventPruner(apiserver.store, eventsConfig.retention, { logger: deps.logger })
      : undefined
  // Distribution jobs (lib/jobs): the controller follows the API it is served next to; its
  // transitions go to the event log as job.* and task.* events.
  const jobs = apiserver
    ? jobControllerPart(apiserver, {
        logger: deps.logger,
        ...deps.jobs,
        onTransition: (t) => {
          deps.jobs?.onTransition?.(t)
          recordJobTransition(recorder, jobEvent(t))
        },
      })
    : undefined

  // Plugins (lib/plugins): kinds registered before the API serves, parts started last.
  const plugins = new PluginHost(config.plugins, {
    daemon: 'herd',
    logger: deps.logger,
    metrics: proxyRegistry,
    registry,
    services: () => ({
      router: apiserver?.router,
      store: apiserver?.store,
      api: apiserver ? { url: loopbackUrl(apiserver.url), token: apiserver.internalToken } : undefined,
      proxyUrl: proxy ? `http://${addr(portOfUrl(proxy.url))}` : undefined,
      buildIndexUrl: buildIndex ? `http://${addr(portOfUrl(buildIndex.url))}` : undefined,
    }),
  })

  // The API first and the recorder next: they stop last, so the other parts' last events are
  // still written when they stop.
  const parts: Part[] = [
    ...(plugins.empty ? [] : [plugins.setupPart]),
    ...(apiserver ? [apiserver] : []),
    ...(recorder instanceof QueuedEventRecorder ? [recorder] : []),
    ...(pruner ? [pruner] : []),
    originPeer,
    originHttp,
    () => {
      tracker = new TrackerServer(
        section(TrackerConfigSchema, 'tracker', config.tracker, {
          log,
          server: { host: bind, port: portOf('tracker') },
          origins: [{ peer: addr(originPeer.port), http: originAddr() }],
        }),
        { logger: deps.logger },
      )
      return tracker
    },
    () => {
      buildIndex = new BuildIndexServer(
        section(BuildIndexConfigSchema, 'buildIndex', config.buildIndex, {
          log,
          server: { host: bind, port: portOf('buildIndex') },
          origins: [originAddr()],
          ...tagStorage,
        }),
        { logger: deps.logger, events: forService(recorder, 'build-index') },
      )
      return buildIndex
    },
    () => {
      originNode = new OriginNode(
        section(OriginConfigSchema, 'origin', config.origin, {
          log,
          server: { host: bind, port: originHttp.port },
          peer: { host: bind, port: originPeer.port },
          dataDir: join(dataDir, 'origin'),
          ...originStorage,
          trackerUrl: `http://${addr(portOfUrl(tracker?.url))}`,
          self: originAddr(),
          buildIndex: addr(portOfUrl(buildIndex?.url)),
        }),
        { logger: deps.logger, listeners: { http: originHttp.server, peer: originPeer.server } },
      )
      return originNode
    },
    () => {
      proxy = new ProxyServer(
        section(ProxyConfigSchema, 'proxy', config.proxy, {
          log,
          server: { host: bind, port: portOf('proxy') },
          origins: [originAddr()],
          buildIndex: addr(portOfUrl(buildIndex?.url)),
        }),
        { logger: deps.logger, registry: proxyRegistry, events: forService(recorder, 'proxy') },
      )
      return proxy
    },
    ...(jobs ? [jobs.part] : []),
    ...(plugins.empty ? [] : [plugins.runPart]),
  ]

  let wired: { urls: Herd['urls']; originPeerPort: number; originNode: OriginNode } | undefined
  const started = () => {
    if (!wired) throw new ShoalError('UNAVAILABLE', 'the herd is not started')
    return wired
  }
  const life = new Lifecycle('herd', {
    start: async (signal) => {
      stopper = await startAll(parts, signal)
      const ports = {
        proxy: portOfUrl(proxy?.url),
        originPeer: originPeer.port,
        originHttp: originHttp.port,
        tracker: portOfUrl(tracker?.url),
        buildIndex: portOfUrl(buildIndex?.url),
        ...(apiserver ? { apiserver: portOfUrl(apiserver.url) } : {}),
      }
      wired = {
        urls: {
          proxy: `http://${addr(ports.proxy)}`,
          origin: `http://${addr(ports.originHttp)}`,
          tracker: `http://${addr(ports.tracker)}`,
          buildIndex: `http://${addr(ports.buildIndex)}`,
          ...(apiserver ? { apiserver: `http://${addr(portOfUrl(apiserver.url))}` } : {}),
        },
        originPeerPort: ports.originPeer,
        originNode: originNode as OriginNode,
      }
      deps.logger.info({ ports, advertiseHost: host, dataDir }, 'herd started')
    },
    stop: async () => {
      await stopper?.stop()
      deps.logger.info('herd stopped')
    },
  })
  return {
    get urls() {
      return started().urls
    },
    get originPeerPort() {
      return started().originPeerPort
    },
    get originNode() {
      return started().originNode
    },
    apiserver,
    get jobs() {
      return jobs?.controller()
    },
    events: recorder,
    start: (signal) => life.start(signal),
    stop: () => life.stop(),
  }
}

export async function startHerd(config: HerdConfig, deps: HerdDeps): Promise<Herd> {
  const herd = createHerd(config, deps)
  await herd.start()
  return herd
}

/** True for a non-empty array (a `namespaces` table that routes something). */
function hasEntries(value: unknown): boolean {
  return Array.isArray(value) && value.length > 0
}

/** The port of a started server's `http://host:port` URL. */
function portOfUrl(url: string | undefined): number {
  if (!url) throw new ShoalError('UNAVAILABLE', 'the herd is not started')
  return Number(new URL(url).port)
}

function section<T>(
  schema: import('../config/index.js').ZodType<T>,
  name: string,
  user: Record<string, unknown>,
  wiring: Record<string, unknown>,
): T {
  return validateConfig(schema, deepMerge(wiring, user), `herd config section "${name}"`)
}

/**
 * A port that was free a moment ago (the listener is closed again before it resolves). Racy by
 * nature: only for tests that hand a port to a separate process; in-process parts bind port 0.
 */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolvePort(port))
    })
  })
}
