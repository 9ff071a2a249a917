import t from 'tap'
import { MemoryPeerStore } from '../../lib/tracker/peerstore/memory.js'
import { peerStoreContract } from './peerstore.contract.js'

peerStoreContract(t, 'memory', async ({ maxPeersPerInfoHash }) => ({
  store: new MemoryPeerStore({ maxPeersPerInfoHash, sweepIntervalMs: 50 }),
  cleanup: async () => {},
}))
