/**
 * Routes behind a TokenAuth: a Router whose every route checks the caller first (GET and HEAD
 * as reads, every other method as a write) and then runs the handler. The daemon registers its
 * API on it instead of on its HTTP server's router; the server's own /health, /readiness and
 * /metrics stay open for probes and scrapers.
 */
import { ShoalError } from '../errors/index.js'
import { type Handler, Router } from '../http/index.js'
import type { TokenAuth } from './tokens.js'

class GuardedRouter extends Router {
  constructor(
    private readonly inner: Router,
    private readonly auth: () => TokenAuth | undefined,
  ) {
    super()
  }

  override add(method: string, pattern: string, handler: Handler): this {
    const write = method !== 'GET' && method !== 'HEAD'
    this.inner.add(method, pattern, (ctx) => {
      const auth = this.auth()
      // Tokens are read when the daemon starts, before it listens; nothing is served before.
      if (!auth) throw new ShoalError('UNAVAILABLE', 'starting')
      auth.check(ctx.req, write)
      return handler(ctx)
    })
    return this
  }
}

/** `router` with every route added through the result checked by `auth()` first. */
export function guarded(router: Router, auth: () => TokenAuth | undefined): Router {
  return new GuardedRouter(router, auth)
}
