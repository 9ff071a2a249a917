/**
 * The proxy daemon: the push entry point (docs/architecture.md §2 push flow, §4).
 *
 *   HEAD   /proxy/namespace/:ns/blobs/:digest         200 + content-length when stored, else 404
 *   PUT    /proxy/namespace/:ns/blobs/:digest         raw bytes with Content-Length; streamed to
 *                                                     the owner origin → 201, or 200 if stored
 *   PUT    /proxy/tags/:tag/digest/:digest[?ns=]      put the tag in build-index; optional JSON
 *                                                     body {type?, desc?} (lib/core/tag-meta.ts)
 *   GET    /proxy/tags/:tag                           { tag, digest, createdAt, updatedAt, type?, desc? }
 *   GET    /proxy/tags/:tag/history[?limit=&after=]   build-index's history of the tag
 *   DELETE /proxy/tags/:tag                           remove a tag (not the blob)
 *
 * Tag writes carry the caller's identity on to build-index (x-shoal-actor: the header the
 * caller sent, else its address), so the tag history names the pusher, not this proxy.
 *   GET    /proxy/list[/:prefix][?limit=&after=]      { tags, next? }: build-index's tag list
 *
 * The proxy stores nothing: bytes go straight through to the owner origin, one upload chunk
 * (uploadChunkSize) in memory at a time. /health, /readiness and /metrics are on the same
 * port for now (the separate admin port 15005 of §3 is not split out yet).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { ACTOR_HEADER, BuildIndexClient, listQuery } from '../../build-index/client/index.js'
import {
  Digest,
  MAX_TAG_META_BODY,
  parseNamespace,
  parseTagMetaBody,
  printable,
  Tag,
  tagMetaOf,
} from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import { daemonEvents, type EventRecorder, type QueuedEventRecorder } from '../../events/index.js'
import {
  HttpServer,
  RateLimiter,
  type RouteContext,
  readBody,
  sendEmpty,
  sendJson,
  suspendIdleTimeout,
} from '../../http/index.js'
import { Lifecycle, type Service } from '../../lifecycle/index.js'
import type { Logger } from '../../log/index.js'
import { type Counter, counter, createRegistry, type Registry } from '../../metrics/index.js'
import { type OriginClient, type OriginClientFactory, OriginCluster } from '../../origin/client/index.js'
import type { ProxyConfig } from '../config.js'

export interface ProxyDeps {
  logger: Logger
  registry?: Registry
  /** Builds the clients of the origins, configured and owners (default: new OriginClient). */
  originClientFor?: OriginClientFactory
  buildIndex?: BuildIndexClient
  /** The event log (docs/events.md); default: events are only logged. */
  events?: EventRecorder
}

export class ProxyServer implements Service {
  readonly http: HttpServer
  readonly registry: Registry
  private readonly log: Logger
  private readonly life = new Lifecycle('proxy', {
    start: async () => {
      await this.ownEvents?.start()
      await this.origins.start()
      await this.http.start(this.config.server.port, this.config.server.host)
    },
    stop: async () => {
      await this.http.stop()
      await this.origins.stop()
      await this.ownEvents?.stop()
    },
  })
  private readonly origins: OriginCluster
  private readonly buildIndex: BuildIndexClient
  private readonly events: EventRecorder
  /** The recorder of `config.events` (started and stopped with the proxy), if it has one. */
  private readonly ownEvents: QueuedEventRecorder | undefined
  private readonly pushes: Counter
  private readonly pushedBytes: Counter
  /** Pushes being uploaded to an origin, by `ns/hex`: later pushes of the same blob wait for them. */
  private readonly uploading = new Map<string, Promise<unknown>>()

  constructor(
    readonly config: ProxyConfig,
    deps: ProxyDeps,
  ) {
    this.log = deps.logger.child({ component: 'proxy' })
    this.registry = deps.registry ?? createRegistry('proxy', { processMetrics: true })
    this.origins = new OriginCluster(config.origins, deps.originClientFor, {
      health: config.originHealth,
      logger: this.log,
      registry: this.registry,
    })
    this.buildIndex = deps.buildIndex ?? new BuildIndexClient(config.buildIndex)
    const ev = daemonEvents(config.events, { ...deps, service: 'proxy', registry: this.registry })
    this.events = ev.events
    this.ownEvents = ev.owned
    this.pushes = counter(this.registry, 'shoal_proxy_blob_pushes_total', 'Blob pushes by result', ['result'])
    this.pushedBytes = counter(this.registry, 'shoal_proxy_pushed_bytes_total', 'Bytes streamed to origins')
    this.http = new HttpServer({
      name: 'proxy',
      logger: deps.logger,
      limits: config.server,
      registry: this.registry,
      // Pushes need both: a proxy that cannot reach build-index or any origin should not get traffic.
      readiness: async () => {
        await this.buildIndex.http.status('GET', '/health', { timeoutMs: 2_000 })
        await anyHealthy(this.origins.seeds)
      },
      onStart: () =>
        this.log.info(
          { url: this.url, origins: this.config.origins, buildIndex: this.config.buildIndex },
          'proxy started',
        ),
      onStop: () => this.log.info('proxy stopped'),
    })
    this.routes()
  }

  /** Binds the HTTP server (lib/lifecycle contract: idempotent, undone when it fails). */
  start(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal)
  }

  /** Idempotent. */
  stop(): Promise<void> {
    return this.life.stop()
  }

  /** http://host:port actually bound (valid after start()). */
  get url(): string {
    return this.http.url
  }

  /**
   * Tag writes are recorded by build-index, which knows the old digest; the proxy records only
   * the ones that never got an answer from it (unreachable, timed out): nobody else saw them.
   */
  private unrecorded(err: unknown, action: string, tag: string, actor: string, digest?: string): never {
    const code = (err as { code?: string })?.code
    if (code === 'UNAVAILABLE' || code === 'TIMEOUT' || code === 'UPSTREAM_ERROR')
      this.events.record({ action, subject: tag, tag, digest, actor, error: err })
    throw err
  }

  private routes(): void {
    const r = this.http.router
    r.head('/proxy/namespace/:ns/blobs/:digest', async ({ params, res, signal }) => {
      const ns = parseNamespace(params.ns ?? '')
      const digest = Digest.parse(params.digest ?? '')
      const stat = await this.origins.withOwner(digest, (o) => o.stat(ns, digest, signal), {
        signal,
        what: 'HEAD blob',
      })
      if (!stat) throw new ShoalError('BLOB_NOT_FOUND', `blob not found: ${digest}`)
      sendEmpty(res, 200, { 'content-length': stat.size })
    })

    const pushLimit = new RateLimiter('push', this.config.rateLimits.push, 'rateLimits.push')
    r.put('/proxy/namespace/:ns/blobs/:digest', async ({ req, res, params, signal }) => {
      pushLimit.check(req, res)
      const ns = parseNamespace(params.ns ?? '')
      const digest = Digest.parse(params.digest ?? '')
      const size = contentLength(req)
      // The owners are looked up once per push, and existence is checked once: by the upload
      // start at the owner, which answers ALREADY_EXISTS for a stored blob (no HEAD before it).
      // Until this push's own upload starts its body is deliberately left unread.
      const resumeIdleLimit = suspendIdleTimeout(req)
      const key = `${ns}/${digest.hex}`
      // Single flight: concurrent pushes of one blob wait for the one uploading it, then find it
      // stored (or, if it failed, one of them uploads).
      for (let running = this.uploading.get(key); running; running = this.uploading.get(key))
        await untilSettledOrAborted(running, signal)
      const started = Date.now()
      let upload: Promise<{ existed: boolean }> | undefined
      let owner: OriginClient | undefined
      // An owner that is down or fails before the upload starts is passed for the next one; once
      // the body is being read it cannot be sent again.
      let bodyRead = false
      const pushEvent = {
        action: 'push',
        subject: digest.toString(),
        digest: digest.toString(),
        actor: callerOf(req),
      }
      try {
        upload = this.origins.withOwner(
          digest,
          (origin) => {
            owner = origin
            return origin.upload(ns, digest, req, size, {
              chunkSize: this.config.uploadChunkSize,
              signal,
              onStarted: () => {
                bodyRead = true
                resumeIdleLimit()
              },
            })
          },
          { signal, what: 'upload', retryable: () => !bodyRead },
        )
        this.uploading.set(key, upload)
        const { existed } = await upload
        if (existed) {
          this.pushes.inc({ result: 'existed' })
          this.log.info({ ns, digest: digest.toString(), size }, 'push skipped: blob already stored')
          this.events.record({ ...pushEvent, details: { ns, size, result: 'existed' } })
          answerUnread(req, res, 200, { digest: digest.toString(), size, existed: true })
          return
        }
      } catch (err) {
        this.pushes.inc({ result: 'failed' })
        this.events.record({ ...pushEvent, error: err, details: { ns, size } })
        throw err
      } finally {
        if (this.uploading.get(key) === upload) this.uploading.delete(key)
      }
      this.pushes.inc({ result: 'uploaded' })
      this.pushedBytes.inc(size)
      const ms = Date.now() - started
      this.log.info({ ns, digest: digest.toString(), size, ms, origin: owner?.baseUrl }, 'blob pushed')
      this.events.record({
        ...pushEvent,
        details: { ns, size, ms, result: 'stored', origin: owner?.baseUrl },
      })
      sendJson(res, 201, { digest: digest.toString(), size, existed: false })
    })

    r.put('/proxy/tags/:tag/digest/:digest', async ({ req, params, query, res, signal }) => {
      const tag = Tag.parse(params.tag ?? '')
      const digest = Digest.parse(params.digest ?? '')
      const nsParam = query.get('ns')
      const ns = nsParam ? parseNamespace(nsParam) : undefined
      // Checked here too, so a bad meta is refused before build-index is bothered.
      const meta = parseTagMetaBody(await readBody(req, MAX_TAG_META_BODY))
      const actor = callerOf(req)
      const out = await this.buildIndex
        .putTag(tag, digest, { ns, signal, meta, actor })
        .catch((err) => this.unrecorded(err, 'tag.put', tag.toString(), actor, digest.toString()))
      if (out.result !== 'unchanged')
        this.log.info({ tag: out.tag, digest: out.digest.toString(), result: out.result }, 'tag put')
      sendJson(res, 200, { tag: out.tag, digest: out.digest.toString(), result: out.result })
    })

    r.get('/proxy/tags/:tag', async ({ params, res, signal }) => {
      const info = await this.buildIndex.tagInfo(Tag.parse(params.tag ?? ''), signal)
      sendJson(res, 200, {
        tag: info.tag,
        digest: info.digest.toString(),
        createdAt: info.createdAt,
        updatedAt: info.updatedAt,
        ...tagMetaOf(info),
      })
    })

    const list = async ({ params, query, res, signal }: RouteContext) => {
      const page = await this.buildIndex.list(params.prefix ?? '', { ...listQuery(query), signal })
      sendJson(res, 200, page)
    }
    r.get('/proxy/list', list)
    r.get('/proxy/list/', list)
    r.get('/proxy/list/:prefix', list)

    r.get('/proxy/tags/:tag/history', async ({ params, query, res, signal }) => {
      const tag = Tag.parse(params.tag ?? '')
      const { after, limit } = listQuery(query)
      if (after !== undefined && !/^[0-9]{1,15}$/.test(after))
        throw new ShoalError('BAD_REQUEST', `invalid after "${printable(after)}": expected an entry's seq`)
      const page = await this.buildIndex.history(tag, {
        after: after === undefined ? undefined : Number(after),
        limit,
        signal,
      })
      sendJson(res, 200, page)
    })

    r.delete('/proxy/tags/:tag', async ({ req, params, res, signal }) => {
      const tag = Tag.parse(params.tag ?? '')
      const actor = callerOf(req)
      await this.buildIndex
        .deleteTag(tag, { signal, actor })
        .catch((err) => this.unrecorded(err, 'remove', tag.toString(), actor))
      this.log.info({ tag: tag.toString() }, 'tag deleted')
      sendEmpty(res, 204)
    })
  }
}

export async function startProxy(config: ProxyConfig, deps: ProxyDeps): Promise<ProxyServer> {
  const server = new ProxyServer(config, deps)
  await server.start()
  return server
}

/**
 * Who a tag write is for: the x-shoal-actor the caller sent (checked again by build-index),
 * else the caller's address. Without it build-index would record this proxy for every push.
 */
function callerOf(req: IncomingMessage): string {
  const header = req.headers[ACTOR_HEADER]
  const value = Array.isArray(header) ? header[0] : header
  return value || req.socket.remoteAddress || 'unknown'
}

/** The declared body size; a push must say how big it is so the origin can check it. */
function contentLength(req: IncomingMessage): number {
  const value = req.headers['content-length']
  if (value === undefined) {
    throw new ShoalError(
      'BAD_REQUEST',
      'Content-Length is required: send the blob with its size, not chunked',
      { status: 411 },
    )
  }
  if (!/^[0-9]{1,16}$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new ShoalError('BAD_REQUEST', `invalid Content-Length "${printable(value)}"`)
  }
  return Number(value)
}

/**
 * Answers without reading the request body: the server then closes the connection (the rest
 * of the body would otherwise be read as the next request, and draining gigabytes we do not
 * need is wasted bandwidth); the header tells the client so.
 */
function answerUnread(req: IncomingMessage, res: ServerResponse, status: number, body: unknown): void {
  if (!req.complete) res.setHeader('connection', 'close')
  sendJson(res, status, body)
}

/** Waits for `p` to settle (either way); ABORTED when the request goes away first. */
function untilSettledOrAborted(p: Promise<unknown>, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(new ShoalError('ABORTED', 'the client went away'))
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    const done = () => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }
    p.then(done, done)
  })
}

async function anyHealthy(origins: readonly OriginClient[]): Promise<void> {
  let lastErr: unknown
  for (const o of origins) {
    try {
      await o.http.status('GET', '/health', { timeoutMs: 2_000 })
      return
    } catch (err) {
      lastErr = err
    }
  }
  throw lastErr
}
