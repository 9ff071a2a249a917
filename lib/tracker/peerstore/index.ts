/** Builds the configured peer store. Redis joins the union later. */
import type { z } from '../../config/index.js'
import type { PeerStoreConfig } from '../config.js'
import { MemoryPeerStore } from './memory.js'
import type { PeerStore } from './types.js'

export { MemoryPeerStore, type MemoryPeerStoreOptions } from './memory.js'
export {
  addressKey,
  type PeerClass,
  type PeerRecord,
  type PeerStore,
  type PeerStoreStats,
  peerClass,
  type SwarmCounts,
} from './types.js'

export function createPeerStore(config: z.infer<typeof PeerStoreConfig>): PeerStore {
  switch (config.type) {
    case 'memory':
      return new MemoryPeerStore({
        maxPeersPerInfoHash: config.maxPeersPerInfoHash,
        maxPeers: config.maxPeers,
      })
  }
}
