import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { KindRegistry } from '../../lib/apiserver/registry.js'
import { ApiServer, ApiServerConfigSchema } from '../../lib/apiserver/server/index.js'
import { createResourceStore } from '../../lib/apiserver/store/index.js'
import type { ResourceStore } from '../../lib/apiserver/store/types.js'
import { validateConfig } from '../../lib/config/index.js'
import {
  EVENTS_NAMESPACE,
  EventKind,
  type EventResource,
  RemoteEventSink,
  StoreEventSink,
} from '../../lib/events/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { eventRecorderContract } from './event-recorder.contract.js'

const list = async (store: ResourceStore) =>
  (await store.list(EventKind, { namespace: EVENTS_NAMESPACE })).items as EventResource[]

eventRecorderContract(t, 'in-process store', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-ev-'))
  const make = () =>
    createResourceStore({ type: 'file', dir, historyEvents: 1000, compactEveryRecords: 1000 })
  let store = make()
  await store.start()
  // The herd's store restarting: a new store on the same folder, not started until up().
  return {
    sink: { describe: 'store', write: (name, spec) => new StoreEventSink(store).write(name, spec) },
    list: () => list(store),
    down: async () => {
      await store.stop()
      store = make()
    },
    up: () => store.start(),
    cleanup: async () => {
      await store.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
})

eventRecorderContract(t, 'remote apiserver', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-ev-'))
  const make = (port: number) =>
    new ApiServer(
      validateConfig(ApiServerConfigSchema, {
        server: { host: '127.0.0.1', port },
        store: { type: 'file', dir },
      }),
      { logger: silentLogger(), registry: new KindRegistry().register(EventKind) },
    )
  let api = make(0)
  await api.start()
  const url = api.url
  return {
    sink: new RemoteEventSink(url, { timeoutMs: 2000 }),
    list: () => list(api.store),
    down: () => api.stop(),
    // The same address again: a restarted apiserver.
    up: async () => {
      api = make(Number(new URL(url).port))
      await api.start()
    },
    cleanup: async () => {
      await api.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
})
