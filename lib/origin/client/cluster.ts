/**
 * The origin cluster as other daemons see it: the configured origins, and the owner origins of
 * a digest. The hash ring lives in the origins (lib/origin/server/ring.ts), so a caller needs no
 * ring of its own: it asks a configured origin (healthy ones first, skipping ones that are down)
 * for the digest's locations, which name the healthy owners in ring order, then talks to them in
 * that order, moving to the next when one fails (refused, timed out, 5xx). The proxy,
 * build-index and tracker all reach origins this way.
 *
 * With `health` set, the cluster runs its own health checks (health.ts) of the configured
 * origins and of every owner it has been told of, between start() and stop(): an owner this
 * daemon finds unhealthy is tried after the healthy ones, even when the origins still name it.
 */
import { type Clock, systemClock } from '../../bandwidth/clock.js'
import type { Digest } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import { type Logger, silentLogger } from '../../log/index.js'
import type { Registry } from '../../metrics/index.js'
import { HealthChecker, type HealthCheckSettings, type Probe } from './health.js'
import { OriginClient } from './index.js'

/** Builds the client of one origin from its address (host:port or URL). */
export type OriginClientFactory = (address: string) => OriginClient

export interface OriginClusterOptions {
  /** Health checks of the origins; without them every origin counts as healthy. */
  health?: HealthCheckSettings
  logger?: Logger
  registry?: Registry
  clock?: Clock
  probe?: Probe
  /**
   * An owner the origins have not named for this long, and not configured, is forgotten: its
   * client and its health checks are dropped (an origin that left the ring, or an address a
   * DNS name no longer resolves to). Default 10 minutes.
   */
  forgetAfterMs?: number
}

const FORGET_AFTER_MS = 10 * 60 * 1000

/** Failures worth trying the next origin for: it is down, slow, or failed (5xx), not a "no". */
export function failsOver(err: unknown): boolean {
  if (!(err instanceof ShoalError) || err.code === 'ABORTED') return false
  return err.code === 'UNAVAILABLE' || err.code === 'TIMEOUT' || err.status >= 500
}

export class OriginCluster {
  /** Clients of the configured origins, in the order they are asked. */
  readonly seeds: readonly OriginClient[]
  readonly health: HealthChecker | undefined
  private readonly clients = new Map<string, OriginClient>()
  /** When the origins last named each owner that is not configured (clock ms). */
  private readonly lastNamed = new Map<string, number>()
  private readonly seedKeys: ReadonlySet<string>
  private readonly clock: Clock
  private readonly forgetAfterMs: number
  private lastSweep = 0
  private readonly log: Logger | undefined

  /**
   * `addresses`: the configured origins (host:port or URL), at least one.
   * `newClient`: builds the client of an origin, configured or returned by `locations` (tests).
   */
  constructor(
    addresses: readonly string[],
    private readonly newClient: OriginClientFactory = (a) => new OriginClient(a),
    opts: OriginClusterOptions = {},
  ) {
    if (addresses.length === 0)
      throw new ShoalError('CONFIG_INVALID', 'no origins configured: set "origins" to at least one host:port')
    this.log = opts.logger
    this.clock = opts.clock ?? systemClock
    this.forgetAfterMs = opts.forgetAfterMs ?? FORGET_AFTER_MS
    this.lastSweep = this.clock.now()
    if (opts.health) {
      this.health = new HealthChecker({
        ...opts.health,
        logger: opts.logger ?? silentLogger(),
        registry: opts.registry,
        clock: opts.clock,
        probe: opts.probe,
      })
    }
    this.seeds = addresses.map((a) => this.clientFor(a))
    this.seedKeys = new Set(addresses.map(normalise))
  }

  /** How many origins this cluster has a client of: the configured ones and owners named lately. */
  get known(): number {
    return this.clients.size
  }

  /** Starts the health checks (when configured). */
  async start(): Promise<void> {
    this.health?.start()
  }

  async stop(): Promise<void> {
    this.health?.stop()
  }

  /** The client of the digest's first healthy owner (primary, unless it is down). */
  async owner(digest: Digest, signal?: AbortSignal): Promise<OriginClient> {
    return (await this.owners(digest, signal))[0] as OriginClient
  }

  /** The digest's owners as the origins name them (healthy ones, ring order); ones this daemon finds unhealthy last. */
  async owners(digest: Digest, signal?: AbortSignal): Promise<OriginClient[]> {
    const addresses = await this.locations(digest, signal)
    const now = this.clock.now()
    this.forgetStale(now)
    return this.healthyFirst(
      addresses.map((a) => {
        const key = normalise(a)
        if (!this.seedKeys.has(key)) this.lastNamed.set(key, now)
        return this.clientFor(a)
      }),
    )
  }

  /**
   * Drops owners not named for forgetAfterMs (looked for at most every quarter of it), so a
   * ring whose members come and go does not leave this daemon probing origins that are gone.
   */
  private forgetStale(now: number): void {
    if (now - this.lastSweep < this.forgetAfterMs / 4) return
    this.lastSweep = now
    for (const [key, at] of this.lastNamed) {
      if (now - at < this.forgetAfterMs) continue
      this.lastNamed.delete(key)
      this.clients.delete(key)
      this.health?.remove(key)
      this.log?.info({ origin: key }, 'forgot an origin the ring no longer names as an owner')
    }
  }

  /**
   * Every configured origin, the digest's owners first (for reads that may fall back: one of the
   * others may still hold a copy, or fetch it from the backend). When no origin can tell the
   * owners, the configured order (healthy ones first).
   */
  async ownersFirst(digest: Digest, signal?: AbortSignal): Promise<OriginClient[]> {
    const { owners, others } = await this.ownersAndOthers(digest, signal)
    return [...owners, ...others]
  }

  /** ownersFirst() in two parts: the owners (none when no origin could tell), and the other configured origins. */
  async ownersAndOthers(
    digest: Digest,
    signal?: AbortSignal,
  ): Promise<{ owners: OriginClient[]; others: OriginClient[] }> {
    let owners: OriginClient[] = []
    try {
      owners = await this.owners(digest, signal)
    } catch (err) {
      if (signal?.aborted) throw err
    }
    return { owners, others: this.healthyFirst(this.seeds).filter((c) => !owners.includes(c)) }
  }

  /**
   * Runs `fn` against the digest's owners in order (then the other configured origins, as a
   * last resort), moving to the next while it fails over (failsOver: refused, timed out, 5xx) and
   * `retryable()` allows (a push whose body has started cannot be sent again). Resolves with
   * the first success; rejects with the last failure, or at once with one that does not fail over.
   */
  async withOwner<T>(
    digest: Digest,
    fn: (origin: OriginClient) => Promise<T>,
    opts: { signal?: AbortSignal; what?: string; retryable?: () => boolean } = {},
  ): Promise<T> {
    const candidates = [
      ...new Set([...(await this.owners(digest, opts.signal)), ...this.healthyFirst(this.seeds)]),
    ]
    let lastErr: unknown
    for (const [i, origin] of candidates.entries()) {
      try {
        return await fn(origin)
      } catch (err) {
        lastErr = err
        const next = candidates[i + 1]
        if (!next || opts.signal?.aborted || !failsOver(err) || opts.retryable?.() === false) throw err
        this.log?.debug(
          {
            digest: digest.toString(),
            what: opts.what,
            failed: origin.baseUrl,
            next: next.baseUrl,
            code: (err as ShoalError).code,
            err: (err as Error).message,
          },
          'origin request failed; trying the next origin',
        )
      }
    }
    throw lastErr
  }

  /** The digest's owners, primary first, as the first configured origin that answers says. */
  private async locations(digest: Digest, signal?: AbortSignal): Promise<string[]> {
    let lastErr: unknown
    for (const seed of this.healthyFirst(this.seeds)) {
      let locations: string[]
      try {
        locations = await seed.locations(digest, signal)
      } catch (err) {
        // An origin that is down should not stop the caller while others can answer.
        if (!signal?.aborted && failsOver(err)) {
          lastErr = err
          continue
        }
        throw err
      }
      if (locations.length === 0)
        throw new ShoalError('UPSTREAM_ERROR', `origin ${seed.baseUrl} returned no locations for ${digest}`)
      return locations
    }
    throw new ShoalError(
      'UNAVAILABLE',
      `no configured origin answered the locations of ${digest}; check that the origins are running`,
      { cause: lastErr },
    )
  }

  /** Stable: healthy ones in their order, then unhealthy ones in theirs. */
  private healthyFirst(list: readonly OriginClient[]): OriginClient[] {
    const health = this.health
    if (!health) return [...list]
    const up = list.filter((c) => health.isHealthy(c.baseUrl))
    return up.length === list.length ? [...list] : [...up, ...list.filter((c) => !up.includes(c))]
  }

  /** The client of the origin at `address`, one per origin however the address is spelt. */
  clientFor(address: string): OriginClient {
    const key = normalise(address)
    let c = this.clients.get(key)
    if (!c) {
      c = this.newClient(address)
      this.clients.set(key, c)
      // Owners the origins name are checked too, once known.
      this.health?.add(key)
    }
    return c
  }
}

/** As HttpClient spells its base URL: scheme added, trailing slashes dropped. */
function normalise(address: string): string {
  return (/^https?:\/\//.test(address) ? address : `http://${address}`).replace(/\/+$/, '')
}
