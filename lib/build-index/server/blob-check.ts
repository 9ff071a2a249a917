/**
 * "Does the origin cluster hold this blob?" A tag may only point at a digest the origins
 * hold, so a pull never resolves to a blob nobody can serve: HEAD the blob on its first healthy
 * owner origin (found by OriginCluster; the next one when it fails).
 */
import type { Digest } from '../../core/index.js'
import type { OriginCluster } from '../../origin/client/index.js'

export interface BlobCheck {
  exists(ns: string, digest: Digest, signal?: AbortSignal): Promise<boolean>
}

export class OriginBlobCheck implements BlobCheck {
  constructor(private readonly origins: OriginCluster) {}

  async exists(ns: string, digest: Digest, signal?: AbortSignal): Promise<boolean> {
    const stat = await this.origins.withOwner(digest, (o) => o.stat(ns, digest, signal), {
      signal,
      what: 'HEAD blob',
    })
    return stat !== undefined
  }
}
