/**
 * "Does the origin cluster hold this blob?" A tag may only point at a digest the origins
 * hold, so a pull never resolves to a blob nobody can serve: HEAD the blob on its owner origin
 * (found by OriginCluster).
 */
import type { Digest } from '../../core/index.js'
import type { OriginCluster } from '../../origin/client/index.js'

export interface BlobCheck {
  exists(ns: string, digest: Digest, signal?: AbortSignal): Promise<boolean>
}

export class OriginBlobCheck implements BlobCheck {
  constructor(private readonly origins: OriginCluster) {}

  async exists(ns: string, digest: Digest, signal?: AbortSignal): Promise<boolean> {
    const owner = await this.origins.owner(digest, signal)
    const stat = await owner.stat(ns, digest, signal)
    return stat !== undefined
  }
}
