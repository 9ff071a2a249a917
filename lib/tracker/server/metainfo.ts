/**
 * Metainfo for a digest, fetched from the origins with its owners first (as the origin cluster
 * tells them: lib/origin/client OriginCluster), validated, and kept in a bounded LRU. Concurrent
 * requests for the same digest share one fetch: when a thousand agents start the same pull, the
 * origins see one request, not a thousand.
 */
import { type Digest, MetaInfo } from '../../core/index.js'
import { isAbortError, isShoalError, ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { OriginClient, OriginCluster } from '../../origin/client/index.js'

export type MetainfoResult = 'hit' | 'fetched' | 'not_found' | 'unavailable'

export interface MetainfoServiceOptions {
  /** The configured origins; undefined when there are none. */
  origins: OriginCluster | undefined
  cacheSize: number
  logger: Logger
  onResult?: (result: MetainfoResult) => void
}

export class MetainfoService {
  private readonly cache = new Map<string, Buffer>()
  private readonly inflight = new Map<string, Promise<Buffer>>()
  private controller = new AbortController()

  constructor(private readonly opts: MetainfoServiceOptions) {}

  async get(ns: string, digest: Digest): Promise<Buffer> {
    const key = digest.hex
    const cached = this.cache.get(key)
    if (cached) {
      this.cache.delete(key)
      this.cache.set(key, cached)
      this.opts.onResult?.('hit')
      return cached
    }
    // In-flight fetches are keyed by namespace too: namespaces may route to different backends.
    const flightKey = `${ns}\u0000${key}`
    let flight = this.inflight.get(flightKey)
    if (!flight) {
      flight = this.fetch(ns, digest).finally(() => this.inflight.delete(flightKey))
      this.inflight.set(flightKey, flight)
    }
    return flight
  }

  /** Drops the cached metainfo of a digest (its origin copy was corrupt: ask again next time). */
  forget(digest: Digest): void {
    this.cache.delete(digest.hex)
  }

  /** Aborts fetches in flight (on stop) and empties the cache. */
  close(): void {
    this.controller.abort()
    this.controller = new AbortController()
    this.cache.clear()
  }

  private async fetch(ns: string, digest: Digest): Promise<Buffer> {
    const cluster = this.opts.origins
    if (!cluster) {
      this.opts.onResult?.('unavailable')
      throw new ShoalError(
        'UNAVAILABLE',
        'no origins are configured on this tracker: list them under "origins" in its config',
      )
    }
    const signal = this.controller.signal
    const { owners, others } = await cluster.ownersAndOthers(digest, signal).catch((err: unknown) => {
      throw new ShoalError('UNAVAILABLE', 'the tracker is shutting down', { cause: err })
    })
    const origins = [...owners, ...others]
    let notFound = 0
    let corrupt: ShoalError | undefined
    const problems: string[] = []
    for (const client of origins) {
      const origin = client.baseUrl
      try {
        const raw = await client.metainfo(ns, digest, signal)
        MetaInfo.parse(raw)
        this.remember(digest.hex, raw)
        this.warm(ns, digest, owners, client, signal)
        this.opts.onResult?.('fetched')
        this.opts.logger.debug(
          { digest: digest.toString(), origin, bytes: raw.length },
          'metainfo fetched from origin',
        )
        return raw
      } catch (err) {
        if (signal.aborted || isAbortError(err) || isShoalError(err, 'ABORTED')) {
          throw new ShoalError('UNAVAILABLE', 'the tracker is shutting down', { cause: err })
        }
        if (isShoalError(err, 'BLOB_NOT_FOUND') || isShoalError(err, 'NOT_FOUND')) {
          notFound++
          continue
        }
        const e = toShoalError(err, 'UPSTREAM_ERROR')
        if (e.code === 'BLOB_CORRUPT') corrupt = e
        problems.push(`${origin}: ${e.message}`)
        this.opts.logger.warn(
          { digest: digest.toString(), origin, code: e.code, err: e.message },
          'origin failed to serve metainfo',
        )
      }
    }
    // Not found only when every origin said so; one that failed might be the one holding it.
    if (notFound === origins.length) {
      this.opts.onResult?.('not_found')
      throw new ShoalError(
        'BLOB_NOT_FOUND',
        `blob ${digest} is not known to any origin (${origins.length} asked); push it first`,
      )
    }
    this.opts.onResult?.('unavailable')
    // No origin could serve it and one refuses it as corrupt: that is the answer, not "retry".
    if (corrupt) throw corrupt
    throw new ShoalError(
      'UNAVAILABLE',
      `cannot get metainfo for ${digest} from the origins; retry later (${problems.join('; ')})`,
    )
  }

  /**
   * Asks the digest's other owners for its metainfo too, in the background: an owner that does
   * not hold the blob yet fetches it from the backend and starts seeding it, so every healthy
   * owner announces itself and is handed out to agents as an origin peer, not only the one that
   * answered. Only owners not asked yet (those after `served`): one asked before it said no or
   * failed. Failures only matter to that owner (logged at debug).
   */
  private warm(
    ns: string,
    digest: Digest,
    owners: OriginClient[],
    served: OriginClient,
    signal: AbortSignal,
  ): void {
    for (const owner of owners.slice(owners.indexOf(served) + 1)) {
      owner.metainfo(ns, digest, signal).then(
        () => undefined,
        (err: unknown) =>
          this.opts.logger.debug(
            { digest: digest.toString(), origin: owner.baseUrl, err: (err as Error).message },
            'owner asked to seed the blob has not got it yet',
          ),
      )
    }
  }

  private remember(key: string, raw: Buffer): void {
    if (this.opts.cacheSize <= 0) return
    this.cache.set(key, raw)
    while (this.cache.size > this.opts.cacheSize) {
      const oldest = this.cache.keys().next().value
      if (oldest === undefined) break
      this.cache.delete(oldest)
    }
  }
}
