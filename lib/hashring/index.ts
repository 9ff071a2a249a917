/**
 * Which origins own a digest: a consistent-hash ring (ketama, via the `hashring` package) over
 * the origins' HTTP addresses. Adding or removing one origin moves only about 1/n of the blobs.
 * Every process configured with the same node list computes the same owners. Only the origins
 * keep a ring (lib/origin/server/ring.ts); other daemons ask them (lib/origin/client OriginCluster).
 */
import HashRingImpl from 'hashring'
import type { Digest } from '../core/index.js'
import { ShoalError } from '../errors/index.js'

export class HashRing {
  readonly nodes: readonly string[]
  private readonly ring: HashRingImpl

  constructor(nodes: readonly string[]) {
    const unique = [...new Set(nodes.map((n) => n.trim()).filter((n) => n.length > 0))]
    if (unique.length === 0)
      throw new ShoalError('CONFIG_INVALID', 'the hash ring needs at least one origin address')
    this.nodes = Object.freeze(unique)
    this.ring = new HashRingImpl([...unique])
  }

  /** Up to `n` distinct owners of `digest`; the first is the primary. */
  owners(digest: Digest, n = 1): string[] {
    const count = Math.max(1, Math.min(n, this.nodes.length))
    return this.ring.range(digest.hex, count, true)
  }

  has(node: string): boolean {
    return this.nodes.includes(node)
  }
}
