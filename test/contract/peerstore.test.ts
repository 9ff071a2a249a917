import t from 'tap'
import { MemoryPeerStore } from '../../lib/tracker/peerstore/memory.js'
import { RedisPeerStore } from '../../lib/tracker/peerstore/redis.js'
import { startTestRedis } from '../helpers/redis.js'
import { peerStoreContract } from './peerstore.contract.js'

peerStoreContract(t, 'memory', async ({ maxPeersPerInfoHash, maxPeers }) => ({
  store: new MemoryPeerStore({ maxPeersPerInfoHash, sweepIntervalMs: 50, ...(maxPeers ? { maxPeers } : {}) }),
  cleanup: async () => {},
}))

// A real redis-server; every store gets its own key prefix, so the cases do not see each other.
const redis = await startTestRedis(t)
let n = 0
peerStoreContract(t, 'redis', async ({ maxPeersPerInfoHash, maxPeers }) => ({
  store: await RedisPeerStore.connect({
    redis: { url: redis.url, keyPrefix: `c${++n}:`, commandTimeoutMs: 2000, connectTimeoutMs: 5000 },
    maxPeersPerInfoHash,
    ...(maxPeers ? { maxPeers } : {}),
  }),
  cleanup: async () => {},
}))
