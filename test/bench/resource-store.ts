/**
 * Figures for the resource stores: creates per second one at a time and 8 at a time (the file
 * store group-commits concurrent writes into one fsync), and how long a watch takes to see the
 * last of them. Prints a table; asserts nothing.
 *
 *   node --import tsx test/bench/resource-store.ts [--n 2000]
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createResourceStore, type StoreConfigT } from '../../lib/apiserver/store/index.js'
import type { ResourceStore } from '../../lib/apiserver/store/types.js'
import { startTestRedis } from '../helpers/redis.js'
import { take, Widget, widget } from '../helpers/resources.js'

const { values } = parseArgs({ options: { n: { type: 'string', default: '2000' } } })
const N = Number(values.n)
const teardowns: (() => unknown)[] = []

async function measure(name: string, config: StoreConfigT): Promise<string> {
  const store: ResourceStore = createResourceStore(config)
  await store.start()
  try {
    const rv = await store.resourceVersion()
    const ac = new AbortController()
    const watch = await store.watch(Widget, { resourceVersion: rv, signal: ac.signal })
    const seen = take(watch, 2 * N, { ms: 600_000 })
    let t0 = performance.now()
    for (let i = 0; i < N; i++) await store.create(Widget, 'ns', widget(`s${i}`))
    const serial = N / ((performance.now() - t0) / 1000)
    t0 = performance.now()
    let next = 0
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < N) await store.create(Widget, 'ns', widget(`p${next++}`))
      }),
    )
    const parallel = N / ((performance.now() - t0) / 1000)
    const last = performance.now()
    await seen
    const lag = performance.now() - last
    ac.abort()
    return `| ${name} | ${serial.toFixed(0)} | ${parallel.toFixed(0)} | ${lag.toFixed(1)} |`
  } finally {
    await store.stop()
  }
}

const dir = await mkdtemp(join(tmpdir(), 'shoal-bench-rs-'))
teardowns.push(() => rm(dir, { recursive: true, force: true }))
const redis = await startTestRedis({ teardown: (fn) => teardowns.push(fn) })
const rows = [
  await measure('file (fsync per batch)', {
    type: 'file',
    dir,
    historyEvents: 10 * N,
    compactEveryRecords: 1000,
  }),
  await measure('redis (unix socket)', {
    type: 'redis',
    redis: { url: redis.url, keyPrefix: 'bench:', commandTimeoutMs: 2000, connectTimeoutMs: 5000 },
    historyEvents: 10 * N,
  }),
]
console.log(`resource store, ${N} creates each way, ${new Date().toISOString()}`)
console.log('| store | creates/s, 1 writer | creates/s, 8 writers | watch lag after the last write (ms) |')
console.log('|---|---|---|---|')
for (const r of rows) console.log(r)
for (const fn of teardowns.reverse()) await fn()
