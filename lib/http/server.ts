/**
 * The HTTP server every daemon uses: router, JSON error mapping, /health, /readiness,
 * /metrics, request logs, and an idempotent start/stop that closes idle and in-flight
 * connections so tests and shutdowns never hang.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { isShoalError, ShoalError, toShoalError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import type { Registry } from '../metrics/index.js'
import { sendError, sendJson } from './body.js'
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
  /**
   * A request body that sends nothing for this long is cut off, so a stalled uploader cannot
   * hold a socket (and an upload's lock) forever. Responses are not limited: an agent may
   * legitimately think for minutes before its first byte. Default 120 s.
   */
  bodyIdleTimeoutMs?: number
}

const DEFAULT_BODY_IDLE_TIMEOUT_MS = 120_000

export class HttpServer {
  readonly router = new Router()
  private readonly log: Logger
  private server: Server | undefined
  private starting: Promise<AddressInfo> | undefined
  private readonly controllers = new Set<AbortController>()

  constructor(private readonly opts: HttpServerOptions) {
    this.log = opts.logger.child({ component: `${opts.name}-http` })
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

  /** Binds host:port (port 0 picks a free one). Idempotent: a second call returns the same address. */
  async start(port: number, host = '127.0.0.1'): Promise<AddressInfo> {
    if (this.starting) return this.starting
    const server = createServer(
      { requestTimeout: 0, headersTimeout: 30_000, keepAliveTimeout: 5_000 },
      (req, res) => {
        void this.handle(req, res)
      },
    )
    server.on('clientError', (err, socket) => {
      this.log.debug({ err: err.message }, 'client error')
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n')
      else socket.destroy()
    })
    this.server = server
    this.starting = new Promise<AddressInfo>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        this.starting = undefined
        this.server = undefined
        const hint =
          err.code === 'EADDRINUSE' ? ' (another process is using it; pick another port in the config)' : ''
        reject(
          new ShoalError(
            'UNAVAILABLE',
            `${this.opts.name}: cannot listen on ${host}:${port}: ${err.code ?? err.message}${hint}`,
            { cause: err },
          ),
        )
      }
      server.once('error', onError)
      server.listen(port, host, () => {
        server.off('error', onError)
        const addr = server.address() as AddressInfo
        this.log.info({ host: addr.address, port: addr.port }, `${this.opts.name} listening`)
        resolve(addr)
        this.opts.onStart?.(addr)
      })
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
    for (const c of this.controllers) c.abort()
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
    this.opts.onStop?.()
  }

  private limitBodyIdle(req: IncomingMessage): void {
    const ms = this.opts.bodyIdleTimeoutMs ?? DEFAULT_BODY_IDLE_TIMEOUT_MS
    if (ms <= 0) return
    req.setTimeout(ms, () => {
      this.log.warn(
        { method: req.method, url: req.url?.slice(0, 200), idleMs: ms },
        'request body stalled; closing',
      )
      req.socket.destroy()
    })
    // Once the body is in, the response may take as long as it needs.
    req.once('end', () => req.socket.setTimeout(0))
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint()
    const controller = new AbortController()
    this.controllers.add(controller)
    const onClose = () => {
      if (!res.writableFinished) controller.abort()
    }
    res.on('close', onClose)
    const hasBody =
      Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined
    if (hasBody) this.limitBodyIdle(req)
    const method = req.method ?? 'GET'
    const rawUrl = req.url ?? '/'
    try {
      const q = rawUrl.indexOf('?')
      const path = q < 0 ? rawUrl : rawUrl.slice(0, q)
      const query = new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1))
      const { handler, params } = this.router.match(method, path)
      await handler({ req, res, params, query, signal: controller.signal, log: this.log })
    } catch (err) {
      const e = toShoalError(err)
      if (e.status >= 500 && !isShoalError(err))
        this.log.error({ err, method, url: rawUrl }, 'handler failed')
      else if (e.status >= 500)
        this.log.warn({ code: e.code, msg: e.message, method, url: rawUrl }, 'request failed')
      if (!res.destroyed) sendError(res, e)
      // A body we refused to read is still arriving: close so it does not stream into the next request.
      if (!req.complete) res.once('finish', () => req.socket.destroy())
    } finally {
      this.controllers.delete(controller)
      res.off('close', onClose)
      const ms = Number(process.hrtime.bigint() - started) / 1e6
      if (!rawUrl.startsWith('/health') && !rawUrl.startsWith('/metrics')) {
        this.log.debug(
          { method, url: rawUrl.slice(0, 300), status: res.statusCode, ms: Math.round(ms) },
          'request',
        )
      }
    }
  }
}
