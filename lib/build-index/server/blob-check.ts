/**
 * "Does the origin cluster hold this blob?" A tag may only point at a digest the origins
 * hold, so a pull never resolves to a blob nobody can serve. The owner origin of a digest is
 * found by asking any configured origin for the digest's locations (the hash ring lives in the
 * origins), then HEAD on the first (primary) location.
 *
 * The same owner lookup exists in lib/proxy/server/owners.ts; both belong in lib/origin/client
 * as a cluster client once that exists.
 */
import type { Digest } from '../../core/index.js'
import { isShoalError, ShoalError } from '../../errors/index.js'
import { OriginClient } from '../../origin/client/index.js'

export interface BlobCheck {
  exists(ns: string, digest: Digest, signal?: AbortSignal): Promise<boolean>
}

export class OriginBlobCheck implements BlobCheck {
  private readonly clients = new Map<string, OriginClient>()

  /** `seeds`: clients of the configured origins, tried in order until one answers. */
  constructor(
    private readonly seeds: OriginClient[],
    private readonly clientFor: (address: string) => OriginClient = (a) => new OriginClient(a),
  ) {
    if (seeds.length === 0)
      throw new ShoalError('CONFIG_INVALID', 'no origins configured: set "origins" to at least one host:port')
    for (const s of seeds) this.clients.set(s.http.baseUrl, s)
  }

  async exists(ns: string, digest: Digest, signal?: AbortSignal): Promise<boolean> {
    const owner = await this.owner(digest, signal)
    const stat = await owner.stat(ns, digest, signal)
    return stat !== undefined
  }

  async owner(digest: Digest, signal?: AbortSignal): Promise<OriginClient> {
    let lastErr: unknown
    for (const seed of this.seeds) {
      let locations: string[]
      try {
        locations = await seed.locations(digest, signal)
      } catch (err) {
        // An origin that is down should not stop tag puts while others can answer.
        if (isShoalError(err, 'UNAVAILABLE') || isShoalError(err, 'TIMEOUT')) {
          lastErr = err
          continue
        }
        throw err
      }
      const first = locations[0]
      if (!first)
        throw new ShoalError('UPSTREAM_ERROR', `origin ${seed.baseUrl} returned no locations for ${digest}`)
      return this.client(first)
    }
    throw new ShoalError(
      'UNAVAILABLE',
      `no configured origin answered the locations of ${digest}; check that the origins are running`,
      {
        cause: lastErr,
      },
    )
  }

  private client(address: string): OriginClient {
    const key = normalise(address)
    let c = this.clients.get(key)
    if (!c) {
      c = this.clientFor(address)
      this.clients.set(key, c)
    }
    return c
  }
}

function normalise(address: string): string {
  return (/^https?:\/\//.test(address) ? address : `http://${address}`).replace(/\/+$/, '')
}
