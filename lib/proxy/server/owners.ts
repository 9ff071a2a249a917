/**
 * Finds the owner origin of a digest: ask the configured origins in order (skipping ones that
 * are down) for the digest's locations, then talk to the first (primary) location. The hash
 * ring lives in the origins, so the proxy needs no ring of its own.
 *
 * The same lookup exists in lib/build-index/server/blob-check.ts; both belong in
 * lib/origin/client as a cluster client once that exists.
 */
import type { Digest } from '../../core/index.js'
import { isShoalError, ShoalError } from '../../errors/index.js'
import { OriginClient } from '../../origin/client/index.js'

export class OwnerOrigins {
  private readonly clients = new Map<string, OriginClient>()

  constructor(
    private readonly seeds: OriginClient[],
    private readonly clientFor: (address: string) => OriginClient = (a) => new OriginClient(a),
  ) {
    if (seeds.length === 0)
      throw new ShoalError('CONFIG_INVALID', 'no origins configured: set "origins" to at least one host:port')
    for (const s of seeds) this.clients.set(s.http.baseUrl, s)
  }

  async owner(digest: Digest, signal?: AbortSignal): Promise<OriginClient> {
    let lastErr: unknown
    for (const seed of this.seeds) {
      let locations: string[]
      try {
        locations = await seed.locations(digest, signal)
      } catch (err) {
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
    const key = (/^https?:\/\//.test(address) ? address : `http://${address}`).replace(/\/+$/, '')
    let c = this.clients.get(key)
    if (!c) {
      c = this.clientFor(address)
      this.clients.set(key, c)
    }
    return c
  }
}
