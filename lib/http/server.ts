/**
 * The HTTP server every daemon uses: router, JSON error mapping, /health, /readiness,
 * /metrics, request logs, and an idempotent start/stop that closes idle and in-flight
 * connections so tests and shutdowns never hang.
 *
 * It is also where one client's misbehaviour stops (docs/robustness.md): connections are
 * capped overall and per client address, a connection on which nothing moves while we wait
 * on the client is closed, and a request whose body the handler did not read ends its
 * connection once answered, so an unread body can neither hold a socket nor be parsed as the
 * next request.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Server as NetServer, Socket } from 'node:net'
import { isShoalError, ShoalError, toShoalError } from '../errors/index.js'
import { listenError } from '../lifecycle/index.js'
import type { Logger } from '../log/index.js'
import type { Registry } from '../metrics/index.js'
import { sendError, sendJson } from './body.js'
import { type Controllers, LazyContext } from './context.js'
import { ClientErrorAnswers, type InFlight, SlowBodySweep } from './limits.js'
import { clientKey } from './rate-limit.js'
import { Router } from './router.js'

export interface HttpServerOptions {
  name: string
  logger: Logger
  registry?: Registry
  /** Throws (or rejects) with a reason when the daemon cannot serve yet. */
  readiness?: () => Promise<void> | void
  /** Called once each time the server starts listening (after start() binds, before it resolves). */
  onStart?: (address: AddressInfo) => void
  /** Called once each time a started server has stopped (after stop() closes, before it resolves). */
  onStop?: () => void
  /** Connection limits (the `server` section of every daemon's config); defaults below. */
  limits?: Partial<HttpLimits>
}

export interface HttpLimits {
  /**
   * A connection on which nothing moves for this long while the server waits on the client
   * (between requests, a request's headers or body, a response the client does not read) is
   * closed, so a stalled uploader cannot hold a socket (and an upload's lock) forever. A
   * handler that is still working on its answer is not cut off: an agent may legitimately
   * think for minutes before its first byte.
   */
  idleTimeoutMs: number
  /** Open connections at most; more are closed as they are accepted. */
  maxConnections: number
  /** Open connections at most from one client address. */
  maxConnectionsPerClient: number
  /** A request's headers must be complete this long after its first byte (slowloris). */
  headersTimeoutMs: number
  /** Request line and headers at most, in bytes (431 past it). */
  maxHeaderBytes: number
  /**
   * A body the server waits on must average at least this many bytes a second over each
   * bodyRateWindowMs (a trickle keeps the idle timeout from firing); 0 turns the check off.
   */
  minBodyBytesPerSec: number
  bodyRateWindowMs: number
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  idleTimeoutMs: 60_000,
  maxConnections: 10_000,
  maxConnectionsPerClient: 512,
  headersTimeoutMs: 30_000,
  maxHeaderBytes: 16 << 10,
  minBodyBytesPerSec: 256,
  bodyRateWindowMs: 30_000,
}

/**
 * After answering a request whose body was not read, the connection is half-closed and given
 * this long for the client to read the answer and close its side, then dropped. Closing at
 * once, with unread bytes in the receive buffer, sends a reset that can destroy the answer.
 */
const LINGER_MS = 2_000
/** At most one "connection refused" warning per this many ms, so a flood cannot flood the log. */
const REFUSAL_LOG_INTERVAL_MS = 10_000

export class HttpServer {
  readonly router = new Router()
  private readonly log: Logger
  private server: Server | undefined
  private starting: Promise<AddressInfo> | undefined
  private readonly controllers = new Set<AbortController>()
  private readonly tracking: Controllers = {
    track: (c) => {
      if (this.server === undefined) c.abort()
      else this.controllers.add(c)
    },
    untrack: (c) => this.controllers.delete(c),
  }
  private readonly limits: HttpLimits
  /** Open connections per client address. */
  private readonly perClient = new Map<string, number>()
  private connectionCount = 0
  private readonly inFlight = new WeakMap<Socket, InFlight>()
  private refusedSinceLog = 0
  private lastRefusalLog = 0
  private readonly slowBodies: SlowBodySweep
  private readonly clientErrors: ClientErrorAnswers

  constructor(private readonly opts: HttpServerOptions) {
    this.log = opts.logger.child({ component: `${opts.name}-http` })
    this.limits = { ...DEFAULT_HTTP_LIMITS, ...definedOnly(opts.limits ?? {}) }
    this.clientErrors = new ClientErrorAnswers(this.limits)
    this.slowBodies = new SlowBodySweep(this.limits, this.log, (socket) => this.inFlight.get(socket))
    this.router.get('/health', ({ res }) => sendJson(res, 200, { status: 'ok', component: opts.name }))
    this.router.get('/readiness', async ({ res }) => {
      try {
        await opts.readiness?.()
        sendJson(res, 200, { status: 'ready', component: opts.name })
      } catch (err) {
        const e = toShoalError(err, 'UNAVAILABLE')
        sendJson(res, 503, { code: 'UNAVAILABLE', message: `${opts.name} not ready: ${e.message}` })
      }
    })
    this.router.get('/metrics', async ({ res }) => {
      const registry = opts.registry
      const text = registry ? await registry.metrics() : ''
      res.writeHead(200, { 'content-type': registry?.contentType ?? 'text/plain; version=0.0.4' })
      res.end(text)
    })
  }

  /**
   * Binds host:port (port 0 picks a free one), or serves on `port` when it is a listener bound
   * earlier (lib/lifecycle ReservedListener). Idempotent: a second call returns the same address.
   */
  async start(port: number | NetServer, host = '127.0.0.1'): Promise<AddressInfo> {
    if (this.starting) return this.starting
    const limits = this.limits
    const server = createServer(
      {
        requestTimeout: 0,
        headersTimeout: limits.headersTimeoutMs,
        maxHeaderSize: limits.maxHeaderBytes,
        keepAliveTimeout: 5_000,
        // Node checks the headers timeout on this period: a fraction of it, so a slowloris
        // client is cut near its deadline rather than up to 30 s late.
        connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(limits.headersTimeoutMs / 4))),
      },
      (req, res) => {
        this.handle(req, res).catch((err) => this.log.error({ err }, 'request handling failed'))
      },
    )
    // Node applies server.timeout to every new socket; 'timeout' listeners take the decision
    // (onIdle) instead of Node's default of destroying the socket.
    server.timeout = this.limits.idleTimeoutMs
    server.on('timeout', (socket: Socket) => this.onIdle(socket))
    server.on('connection', (socket: Socket) => this.admit(socket))
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      this.log.debug({ err: err.message, code: err.code }, 'client error')
      if (!socket.writable) {
        socket.destroy()
        return
      }
      socket.end(this.clientErrors.for(err))
    })
    this.slowBodies.start()
    this.server = server
    this.starting = new Promise<AddressInfo>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        this.slowBodies.stop()
        this.starting = undefined
        this.server = undefined
        reject(listenError(this.opts.name, host, typeof port === 'number' ? port : 0, err))
      }
      server.once('error', onError)
      const onListening = () => {
        server.off('error', onError)
        const addr = server.address() as AddressInfo
        this.log.info({ host: addr.address, port: addr.port }, `${this.opts.name} listening`)
        resolve(addr)
        this.opts.onStart?.(addr)
      }
      if (typeof port === 'number') server.listen(port, host, onListening)
      else server.listen(port, onListening)
    })
    return this.starting
  }

  get port(): number {
    const addr = this.server?.address()
    return addr && typeof addr === 'object' ? addr.port : 0
  }

  /** `http://host:port` actually bound (IPv6 in brackets); UNAVAILABLE until start() resolves and after stop(). */
  get url(): string {
    const addr = this.server?.address()
    if (!addr || typeof addr !== 'object')
      throw new ShoalError('UNAVAILABLE', `${this.opts.name} is not started`)
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
    return `http://${host}:${addr.port}`
  }

  /** Stops accepting, aborts in-flight handlers and closes every connection. Idempotent. */
  async stop(): Promise<void> {
    const server = this.server
    if (!server) return
    this.server = undefined
    this.starting = undefined
    this.slowBodies.stop()
    for (const c of this.controllers) c.abort()
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
    this.opts.onStop?.()
  }

  /** Counts the connection in, or closes it when the server or its client is over its limit. */
  private admit(socket: Socket): void {
    const client = clientKey(socket.remoteAddress)
    const fromClient = this.perClient.get(client) ?? 0
    if (
      this.connectionCount >= this.limits.maxConnections ||
      fromClient >= this.limits.maxConnectionsPerClient
    ) {
      this.noteRefusal(client, fromClient)
      socket.destroy()
      return
    }
    this.connectionCount++
    this.perClient.set(client, fromClient + 1)
    this.slowBodies.watch(socket)
    socket.once('close', () => {
      this.slowBodies.forget(socket)
      this.connectionCount--
      const n = (this.perClient.get(client) ?? 1) - 1
      if (n <= 0) this.perClient.delete(client)
      else this.perClient.set(client, n)
    })
  }

  private noteRefusal(client: string, fromClient: number): void {
    this.refusedSinceLog++
    const now = Date.now()
    if (now - this.lastRefusalLog < REFUSAL_LOG_INTERVAL_MS) return
    this.log.warn(
      {
        client,
        fromClient,
        open: this.connectionCount,
        refused: this.refusedSinceLog,
        maxConnections: this.limits.maxConnections,
        maxConnectionsPerClient: this.limits.maxConnectionsPerClient,
      },
      'connections refused: over the connection limit (server.maxConnections / server.maxConnectionsPerClient)',
    )
    this.lastRefusalLog = now
    this.refusedSinceLog = 0
  }

  /**
   * Nothing moved on the socket for idleTimeoutMs. A handler still working on its answer (the
   * request is in, no response yet) keeps it; anything else (between requests, a stalled
   * body, a response the client does not read) waits on the client, and is closed.
   */
  private onIdle(socket: Socket): void {
    const live = this.inFlight.get(socket)
    if (live?.req.complete && !live.res.headersSent && !live.res.destroyed) {
      socket.setTimeout(this.limits.idleTimeoutMs)
      return
    }
    if (!live) {
      socket.destroy() // between requests, or still sending headers
      return
    }
    const { req, res } = live
    const waitingFor = req.complete ? 'the client to read the response' : 'the request body'
    this.log.warn(
      { method: req.method, url: req.url?.slice(0, 200), idleMs: this.limits.idleTimeoutMs, waitingFor },
      'connection idle; closing',
    )
    if (res.headersSent || res.destroyed) {
      socket.destroy()
      return
    }
    // A stalled body: tell the client why before the connection goes.
    res.setHeader('connection', 'close')
    sendError(
      res,
      new ShoalError(
        'REQUEST_TIMEOUT',
        `the request body sent nothing for ${Math.round(this.limits.idleTimeoutMs / 1000)} s; the connection is closed`,
      ),
    )
  }

  /**
   * Ends a connection whose request body was not (fully) read, once its answer is out: the
   * rest of the body would otherwise be parsed as the next request, or (never sent) hold the
   * connection open.
   */
  private closeUnread(socket: Socket, req: IncomingMessage): void {
    // Once a response is done Node no longer aborts its request when the socket closes: a
    // handler still reading the body (the 408 case) would wait forever.
    const abortBody = () => {
      if (!req.complete && !req.destroyed)
        req.destroy(new ShoalError('ABORTED', 'the connection closed before the request body ended'))
    }
    if (socket.destroyed) {
      abortBody()
      return
    }
    socket.end()
    const timer = setTimeout(() => socket.destroy(), LINGER_MS)
    timer.unref()
    socket.once('close', () => {
      clearTimeout(timer)
      abortBody()
    })
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint()
    // The socket is captured now: once the response is done Node detaches it from req and res.
    const socket = req.socket
    this.inFlight.set(socket, { req, res })
    // Node clears a kept-alive socket's timeout when the next request arrives; re-arm it.
    socket.setTimeout(this.limits.idleTimeoutMs)
    const method = req.method ?? 'GET'
    const rawUrl = req.url ?? '/'
    const q = rawUrl.indexOf('?')
    const ctx = new LazyContext(req, res, this.log, q < 0 ? '' : rawUrl.slice(q + 1), this.tracking)
    res.once('finish', () => {
      if (!req.complete) this.closeUnread(socket, req)
    })
    res.once('close', () => {
      if (this.inFlight.get(socket)?.res === res) this.inFlight.delete(socket)
      ctx.closed()
    })
    try {
      const { handler, params } = this.router.match(method, q < 0 ? rawUrl : rawUrl.slice(0, q))
      ctx.params = params
      await handler(ctx)
    } catch (err) {
      const e = toShoalError(err)
      if (e.status >= 500 && !isShoalError(err))
        this.log.error({ err, method, url: rawUrl }, 'handler failed')
      else if (e.status >= 500)
        this.log.warn({ code: e.code, msg: e.message, method, url: rawUrl }, 'request failed')
      // A body we refused to read may still be arriving: the connection ends after the answer.
      if (!req.complete && !res.headersSent) res.setHeader('connection', 'close')
      if (!res.destroyed) sendError(res, e)
    } finally {
      ctx.release()
      // Built only when someone reads it: the fields cost a visible share of a tracker announce.
      if (
        this.log.isLevelEnabled('debug') &&
        !rawUrl.startsWith('/health') &&
        !rawUrl.startsWith('/metrics')
      ) {
        const ms = Number(process.hrtime.bigint() - started) / 1e6
        this.log.debug(
          { method, url: rawUrl.slice(0, 300), status: res.statusCode, ms: Math.round(ms) },
          'request',
        )
      }
    }
  }
}

/**
 * The server closes a connection whose request body sends nothing for idleTimeoutMs (a stalled
 * client). A handler that deliberately leaves the body unread for a while (a push waiting for
 * another push of the same blob) is not waiting on its client: this lifts the limit for the
 * request; the returned function restores it once the handler reads again.
 */
export function suspendIdleTimeout(req: IncomingMessage): () => void {
  const ms = req.socket.timeout ?? 0
  if (ms > 0) req.socket.setTimeout(0)
  let resumed = false
  return () => {
    if (resumed || ms <= 0 || req.complete || req.socket.destroyed) return
    resumed = true
    req.socket.setTimeout(ms)
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}
