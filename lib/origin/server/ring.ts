/**
 * Who owns a digest: the one place it is computed. Origins answer it (GET
 * /blobs/:digest/locations) from their configured ring; every other daemon asks them through
 * lib/origin/client OriginCluster rather than keeping a ring of its own, so a cluster whose
 * node list changes needs only its origins' config changed.
 */
import type { Digest } from '../../core/index.js'
import { HashRing } from '../../hashring/index.js'
import type { Logger } from '../../log/index.js'

export class OriginRing {
  private readonly ring: HashRing

  /** `nodes`: every origin's HTTP address, this one (`self`) included; empty means just this one. */
  constructor(
    nodes: readonly string[],
    self: string,
    private readonly replicas: number,
    log: Logger,
  ) {
    this.ring = new HashRing(nodes.length > 0 ? nodes : [self])
    if (!this.ring.has(self)) {
      log.warn(
        { self, nodes },
        'this origin is not in its own hash ring: set "self" to its entry in hashring.nodes',
      )
    }
  }

  /** The digest's owners (up to hashring.replicas), primary first. */
  owners(digest: Digest): string[] {
    return this.ring.owners(digest, this.replicas)
  }
}
