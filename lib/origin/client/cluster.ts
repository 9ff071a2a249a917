/**
 * The origin cluster as other daemons see it: the configured origins, and the owner origins of
 * a digest. The hash ring lives in the origins (lib/origin/server/ring.ts), so a caller needs no
 * ring of its own: ask the configured origins in order (skipping ones that are down) for the
 * digest's locations, then talk to the first (primary) location. The proxy, build-index and
 * tracker all find owners this way.
 */
import type { Digest } from '../../core/index.js'
import { isShoalError, ShoalError } from '../../errors/index.js'
import { OriginClient } from './index.js'

/** Builds the client of one origin from its address (host:port or URL). */
export type OriginClientFactory = (address: string) => OriginClient

export class OriginCluster {
  /** Clients of the configured origins, in the order they are asked. */
  readonly seeds: readonly OriginClient[]
  private readonly clients = new Map<string, OriginClient>()

  /**
   * `addresses`: the configured origins (host:port or URL), at least one.
   * `newClient`: builds the client of an origin, configured or returned by `locations` (tests).
   */
  constructor(
    addresses: readonly string[],
    private readonly newClient: OriginClientFactory = (a) => new OriginClient(a),
  ) {
    if (addresses.length === 0)
      throw new ShoalError('CONFIG_INVALID', 'no origins configured: set "origins" to at least one host:port')
    this.seeds = addresses.map((a) => this.clientFor(a))
  }

  /** The client of the digest's owner (primary) origin. */
  async owner(digest: Digest, signal?: AbortSignal): Promise<OriginClient> {
    return this.clientFor((await this.locations(digest, signal))[0] as string)
  }

  /**
   * Every configured origin, the digest's owners first (for reads that may fall back: one of the
   * others may still hold a copy). When no origin can tell the owners, the configured order.
   */
  async ownersFirst(digest: Digest, signal?: AbortSignal): Promise<OriginClient[]> {
    let owners: OriginClient[] = []
    try {
      owners = (await this.locations(digest, signal)).map((a) => this.clientFor(a))
    } catch (err) {
      if (signal?.aborted) throw err
    }
    return [...new Set([...owners, ...this.seeds])]
  }

  /** The digest's owners, primary first, as the first configured origin that answers says. */
  private async locations(digest: Digest, signal?: AbortSignal): Promise<string[]> {
    let lastErr: unknown
    for (const seed of this.seeds) {
      let locations: string[]
      try {
        locations = await seed.locations(digest, signal)
      } catch (err) {
        // An origin that is down should not stop the caller while others can answer.
        if (isShoalError(err, 'UNAVAILABLE') || isShoalError(err, 'TIMEOUT')) {
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

  /** The client of the origin at `address`, one per origin however the address is spelt. */
  clientFor(address: string): OriginClient {
    const key = normalise(address)
    let c = this.clients.get(key)
    if (!c) {
      c = this.newClient(address)
      this.clients.set(key, c)
    }
    return c
  }
}

/** As HttpClient spells its base URL: scheme added, trailing slashes dropped. */
function normalise(address: string): string {
  return (/^https?:\/\//.test(address) ? address : `http://${address}`).replace(/\/+$/, '')
}
