/** Builds the configured peer store (connecting to Redis for 'redis'). */
import type { z } from '../../config/index.js'
import type { PeerStoreConfig } from '../config.js'
import { MemoryPeerStore } from './memory.js'
import { RedisPeerStore } from './redis.js'
import type { PeerStore } from './types.js'

export { MemoryPeerStore, type MemoryPeerStoreOptions } from './memory.js'
export { RedisPeerStore, type RedisPeerStoreOptions } from './redis.js'
export {
  addressKey,
  type Exchange,
  type PeerClass,
  type PeerRecord,
  type PeerStore,
  type PeerStoreStats,
  peerClass,
  type SwarmCounts,
} from './types.js'

export async function createPeerStore(config: z.infer<typeof PeerStoreConfig>): Promise<PeerStore> {
  switch (config.type) {
    case 'memory':
      return new MemoryPeerStore({
        maxPeersPerInfoHash: config.maxPeersPerInfoHash,
        maxPeers: config.maxPeers,
      })
    case 'redis':
      return RedisPeerStore.connect({
        redis: config.redis,
        maxPeersPerInfoHash: config.maxPeersPerInfoHash,
        maxPeers: config.maxPeers,
      })
  }
}
