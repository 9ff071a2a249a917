/**
 * Per-client rate limits (token buckets keyed by client address) for the routes one client can
 * repeat cheaply and the server pays for: push (proxy, origin) and announce (tracker). A
 * refused request is answered 429 TOO_MANY_REQUESTS with Retry-After, before its body is read
 * (the server then ends the connection, lib/http/server.ts).
 *
 * Cheap on the hot path: a request from a known client is one Map lookup and some arithmetic,
 * no allocation; a bucket object is made once per new client address. The table is bounded:
 * full buckets are forgotten first (a full bucket is the same as no bucket), then the oldest.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { ShoalError } from '../errors/index.js'
import type { Handler } from './types.js'

export interface RateLimit {
  /** Requests per second one client address may sustain; 0 turns the limit off. */
  perSecond: number
  /** Requests one client may make at once after being quiet (the bucket's size). */
  burst: number
}

/**
 * The client an address counts as, for every per-client limit: IPv4-mapped IPv6 as its IPv4,
 * and IPv6 by its /64 (one host usually holds the whole /64; keyed by full address, one remote
 * client could take 2^64 buckets and connection slots by cycling its source address). ::1 is
 * one client; each 127/8 address stays its own, as each IPv4 address does: only a process on
 * this host can use them, and single-machine clusters give their agents distinct ones.
 */
export function clientKey(address: string | undefined): string {
  if (!address) return '?'
  const a = address.startsWith('::ffff:') ? address.slice(7) : address
  if (!a.includes(':') || a === '::1') return a
  return `${ipv6Prefix64(a)}::/64`
}

/** The first four hextets of an IPv6 address, written out (`fe80:0:0:0`). */
function ipv6Prefix64(a: string): string {
  const [head = '', tail] = a.split('::')
  const left = head ? head.split(':') : []
  const right = tail === undefined ? [] : tail ? tail.split(':') : []
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
  return groups
    .slice(0, 4)
    .map((g) => (g === '' ? '0' : g.toLowerCase().replace(/^0+(?=.)/, '')))
    .join(':')
}

/** Client addresses tracked at most; past it full buckets, then the oldest, are dropped. */
export const MAX_TRACKED_CLIENTS = 100_000

interface Bucket {
  tokens: number
  /** When `tokens` was last brought up to date (ms, the limiter's clock). */
  at: number
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>()
  private readonly perMs: number

  constructor(
    /** What is limited, for the refusal's message ("push", "announce"). */
    readonly what: string,
    readonly limit: RateLimit,
    /** The config key the operator changes, named in the refusal. */
    readonly key: string,
    /** A monotonic clock (ms): the wall clock can step back and starve every bucket. */
    private readonly now: () => number = () => performance.now(),
    private readonly maxClients = MAX_TRACKED_CLIENTS,
  ) {
    this.perMs = limit.perSecond / 1000
  }

  get enabled(): boolean {
    return this.limit.perSecond > 0
  }

  /** Takes a token for `client`: 0 when allowed, else the ms until a token is there. */
  take(client: string): number {
    if (this.limit.perSecond <= 0) return 0
    const now = this.now()
    let b = this.buckets.get(client)
    if (b === undefined) {
      if (this.buckets.size >= this.maxClients) this.prune(now)
      b = { tokens: this.limit.burst, at: now }
      this.buckets.set(client, b)
    } else if (now > b.at) {
      b.tokens = Math.min(this.limit.burst, b.tokens + (now - b.at) * this.perMs)
      b.at = now
    }
    if (b.tokens >= 1) {
      b.tokens -= 1
      return 0
    }
    return Math.ceil((1 - b.tokens) / this.perMs)
  }

  /**
   * Throws TOO_MANY_REQUESTS (with Retry-After set on `res`) when the request's client has no
   * token left; otherwise takes one.
   */
  check(req: IncomingMessage, res: ServerResponse): void {
    const client = clientKey(req.socket.remoteAddress)
    const waitMs = this.take(client)
    if (waitMs === 0) return
    const retryAfter = Math.max(1, Math.ceil(waitMs / 1000))
    if (!res.headersSent) res.setHeader('retry-after', String(retryAfter))
    throw new ShoalError(
      'TOO_MANY_REQUESTS',
      `too many ${this.what} requests from ${client}: the limit is ${this.limit.perSecond}/s with bursts of ${this.limit.burst} (${this.key}); retry in ${retryAfter} s`,
      { details: { retryAfterSeconds: retryAfter, limit: this.key } },
    )
  }

  /** Client addresses tracked now (for tests and metrics). */
  get tracked(): number {
    return this.buckets.size
  }

  private prune(now: number): void {
    for (const [client, b] of this.buckets) {
      if (b.tokens + (now - b.at) * this.perMs >= this.limit.burst) this.buckets.delete(client)
    }
    // Still full: a flood of distinct addresses. Drop the oldest quarter (Map keeps insertion order).
    if (this.buckets.size >= this.maxClients) {
      let drop = Math.ceil(this.maxClients / 4)
      for (const client of this.buckets.keys()) {
        if (drop-- <= 0) break
        this.buckets.delete(client)
      }
    }
  }
}

/** `handler`, refused with 429 when its client is over `limiter`'s rate. */
export function rateLimited(limiter: RateLimiter, handler: Handler): Handler {
  if (!limiter.enabled) return handler
  return (ctx) => {
    limiter.check(ctx.req, ctx.res)
    return handler(ctx)
  }
}
