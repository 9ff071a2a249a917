import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createResourceStore } from '../../lib/apiserver/store/index.js'
import type { ResourceStore } from '../../lib/apiserver/store/types.js'
import { startTestRedis } from '../helpers/redis.js'
import { resourceStoreContract } from './resource-store.contract.js'

resourceStoreContract(t, 'file', async ({ historyEvents }) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-rs-'))
  // Compact often, so restarts replay snapshot + log, not the log alone.
  const make = () => createResourceStore({ type: 'file', dir, historyEvents, compactEveryRecords: 7 })
  let store: ResourceStore = make()
  await store.start()
  return {
    get store() {
      return store
    },
    reopen: async () => {
      await store.stop()
      store = make()
      await store.start()
      return store
    },
    cleanup: async () => {
      await store.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
})

let n = 0
resourceStoreContract(t, 'redis', async ({ historyEvents }) => {
  const redis = await startTestRedis(t)
  const keyPrefix = `t${n++}:`
  const make = () =>
    createResourceStore({
      type: 'redis',
      redis: { url: redis.url, keyPrefix, commandTimeoutMs: 2000, connectTimeoutMs: 5000 },
      historyEvents,
    })
  const stores: ResourceStore[] = []
  const started = async () => {
    const s = make()
    await s.start()
    stores.push(s)
    return s
  }
  let store = await started()
  return {
    get store() {
      return store
    },
    reopen: async () => {
      await store.stop()
      store = await started()
      return store
    },
    peer: started,
    cleanup: async () => {
      for (const s of stores) await s.stop()
    },
  }
})
