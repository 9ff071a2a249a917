/**
 * The resource API as a daemon part: its own HTTP listener (lib/http HttpServer), the store it
 * serves (started and stopped with it) and the kinds registered by plugins. The herd runs one;
 * anything else can mount the routes on its own router with mountResourceApi.
 */
import { randomBytes } from 'node:crypto'
import { AuthConfig, TokenAuth } from '../../auth/index.js'
import { z } from '../../config/index.js'
import { HttpServer } from '../../http/index.js'
import { Lifecycle, type Service, type Stopper, startAll } from '../../lifecycle/index.js'
import type { Logger } from '../../log/index.js'
import type { KindRegistry } from '../registry.js'
import { createResourceStore, StoreConfig } from '../store/index.js'
import type { ResourceStore } from '../store/types.js'
import { mountResourceApi } from './routes.js'

export const ApiServerConfigSchema = z.strictObject({
  server: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(15006),
      idleTimeoutMs: z.number().int().min(1000).optional(),
      maxConnections: z.number().int().min(1).optional(),
      maxConnectionsPerClient: z.number().int().min(1).optional(),
    })
    .default({ host: '127.0.0.1', port: 15006 }),
  store: StoreConfig,
  auth: AuthConfig,
  watch: z
    .strictObject({
      /** Open watches at most; more answer 429. */
      maxWatchers: z.number().int().min(1).max(100_000).default(1000),
      /** A BOOKMARK this often on an idle watch: keep it under server.idleTimeoutMs (60 s). */
      heartbeatMs: z.number().int().min(10).max(300_000).default(15_000),
      /** A watch client that reads nothing for this long is cut off. */
      slowWatcherMs: z.number().int().min(10).max(600_000).default(10_000),
      /** The longest watch before the server ends it (the client reconnects from its resourceVersion). */
      maxTimeoutSeconds: z.number().int().min(1).max(86_400).default(1800),
    })
    .default({ maxWatchers: 1000, heartbeatMs: 15_000, slowWatcherMs: 10_000, maxTimeoutSeconds: 1800 }),
})
export type ApiServerConfig = z.infer<typeof ApiServerConfigSchema>

export class ApiServer implements Service {
  readonly store: ResourceStore
  /**
   * A token for clients inside this process (the herd's job controller): it writes whether or
   * not tokens are configured, and is logged as the actor "in-process". Never leaves memory.
   */
  readonly internalToken = randomBytes(32).toString('base64url')
  private readonly http: HttpServer
  private readonly life: Lifecycle
  private stopper: Stopper | undefined
  private watchers: { activeWatchers(): number } | undefined

  constructor(
    config: ApiServerConfig,
    deps: { logger: Logger; registry: KindRegistry; store?: ResourceStore },
  ) {
    this.store = deps.store ?? createResourceStore(config.store)
    this.http = new HttpServer({
      name: 'apiserver',
      logger: deps.logger,
      limits: {
        idleTimeoutMs: config.server.idleTimeoutMs,
        maxConnections: config.server.maxConnections,
        maxConnectionsPerClient: config.server.maxConnectionsPerClient,
      },
      readiness: () => this.store.resourceVersion().then(() => undefined),
    })
    this.life = new Lifecycle('apiserver', {
      start: async (signal) => {
        const auth = await TokenAuth.load(config.auth, {
          internal: [{ name: 'in-process', token: this.internalToken }],
          configKey: 'apiserver.auth.tokens in the herd config',
          onReload: (name, file) => deps.logger.info({ token: name, file }, 'token file read again'),
          onReloadError: (name, file, reason) =>
            deps.logger.error(
              { token: name, file, reason },
              'token file changed but cannot be used; the old token stays',
            ),
        })
        this.watchers = mountResourceApi(this.http.router, {
          store: this.store,
          registry: deps.registry,
          auth,
          watch: config.watch,
        })
        const http = {
          start: () => this.http.start(config.server.port, config.server.host).then(() => undefined),
          stop: () => this.http.stop(),
        }
        this.stopper = await startAll([auth, this.store, http], signal)
      },
      stop: async () => {
        await this.stopper?.stop()
      },
    })
  }

  get url(): string {
    return this.http.url
  }

  /** The API's HTTP router: plugins mount their own routes here (lib/plugins). */
  get router(): HttpServer['router'] {
    return this.http.router
  }

  get activeWatchers(): number {
    return this.watchers?.activeWatchers() ?? 0
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal)
  }

  stop(): Promise<void> {
    return this.life.stop()
  }
}

export { AuthConfig, TokenAuth } from '../../auth/index.js'
export { mountResourceApi } from './routes.js'
