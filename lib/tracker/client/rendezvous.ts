/**
 * Rendezvous (highest-random-weight) hashing: every node gets a weight per key, hash(node, key),
 * and a key's nodes are ordered by weight, heaviest first. Every agent and origin computes the
 * same order for an infohash without talking to each other, so a swarm meets on one tracker;
 * keys spread evenly over the nodes; adding or removing a node only moves the keys whose first
 * choice that node is (or was), because the weights of the other nodes do not change.
 */
import { createHash } from 'node:crypto'

/** The weight of `node` for `key`: a SHA-256 over both (the node's name, a separator, the key). */
export function rendezvousWeight(node: string, key: Uint8Array): Buffer {
  return createHash('sha256').update(node).update('\u0000').update(key).digest()
}

/**
 * `nodes` ordered for `key`, heaviest first. The order depends only on the set of nodes and the
 * key, never on the order the nodes were listed in (the name breaks a tie, which SHA-256 makes
 * theoretical).
 */
export function rendezvousOrder<T>(nodes: readonly T[], key: Uint8Array, name: (node: T) => string): T[] {
  const weighted = nodes.map((node) => ({ node, id: name(node), weight: rendezvousWeight(name(node), key) }))
  weighted.sort((a, b) => Buffer.compare(b.weight, a.weight) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return weighted.map((w) => w.node)
}
