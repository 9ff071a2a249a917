/**
 * The agent cache policy against a real BlobStore and a stand-in for Downloads (the engine's
 * side: release, reseed, upload counts), for what a real swarm makes hard to time: a blob a
 * peer is downloading is kept, an eviction stops seeding before it deletes, and one a client
 * starts reading while the engine lets go of it is kept and seeded again.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { AgentCachePolicy } from '../../lib/agent/server/cache-policy.js'
import { ManualClock } from '../../lib/bandwidth/clock.js'
import { Digest, type MetaInfo } from '../../lib/core/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { createRegistry } from '../../lib/metrics/index.js'
import { BlobStore } from '../../lib/store/index.js'
import { tempDir } from '../helpers/files.js'

const TTL_MS = 3_600_000

class FakeDownloads {
  uploaded = new Map<string, number>()
  events: string[] = []
  onRelease: (() => void) | undefined
  constructor(private readonly store: BlobStore) {}
  async release(digest: Digest, _meta: MetaInfo | undefined): Promise<number> {
    this.events.push(
      `release ${digest.hex.slice(0, 6)} cached=${(await this.store.stat(digest)) !== undefined}`,
    )
    this.onRelease?.()
    this.uploaded.delete(digest.hex)
    return 0
  }
  async reseed(digest: Digest): Promise<boolean> {
    this.events.push(`reseed ${digest.hex.slice(0, 6)}`)
    this.uploaded.set(digest.hex, 0)
    return true
  }
  bytesUploaded(digest: Digest): number | undefined {
    return this.uploaded.get(digest.hex)
  }
}

async function setup(t: Test) {
  const dir = await tempDir(t)
  const store = new BlobStore(join(dir, 'store'))
  await store.init()
  const downloads = new FakeDownloads(store)
  let offset = 0
  const clock = new ManualClock()
  const cache = new AgentCachePolicy({
    store,
    downloads,
    log: silentLogger(),
    registry: createRegistry('agent'),
    ttlMs: TTL_MS,
    highWatermark: 1,
    lowWatermark: 1,
    sweepMs: 1000,
    clock,
    now: () => Date.now() + offset,
  })
  await cache.start()
  t.teardown(() => cache.stop())
  const add = async (): Promise<Digest> => {
    const data = randomBytes(4096)
    const digest = Digest.fromBuffer(data)
    await store.putStream(digest, Readable.from([data]))
    cache.added(digest, data.length)
    downloads.uploaded.set(digest.hex, 0)
    return digest
  }
  return {
    store,
    downloads,
    cache,
    add,
    later: (ms: number) => {
      offset += ms
    },
    sweep: () => {
      clock.advance(1000)
      return cache.sweep()
    },
  }
}
t.test('a blob a peer is downloading is kept past the TTL; once the upload stops it goes', async (t) => {
  const { store, downloads, add, later, sweep } = await setup(t)
  const digest = await add()
  later(2 * TTL_MS)
  downloads.uploaded.set(digest.hex, 1 << 20) // the engine served it since the last look
  t.equal(await sweep(), 0, 'served since the last sweep: a use, and kept')
  t.ok(await store.stat(digest))
  later(2 * TTL_MS)
  t.equal(await sweep(), 1, 'no upload since, and a TTL passed: removed')
  t.notOk(await store.stat(digest))
  t.same(
    downloads.events,
    [`release ${digest.hex.slice(0, 6)} cached=true`],
    'seeding stopped before the delete',
  )
})

t.test('a read that starts while the engine lets go of the blob keeps it, seeded again', async (t) => {
  const { store, downloads, cache, add, later, sweep } = await setup(t)
  const digest = await add()
  later(2 * TTL_MS)
  let done: (() => void) | undefined
  let removal: Promise<boolean> | undefined
  downloads.onRelease = () => {
    downloads.onRelease = undefined
    done = cache.reading(digest)
    removal = cache.removal(digest)
  }
  t.equal(await sweep(), 0, 'the eviction gave up')
  t.equal(await removal, false, 'the reader is told the blob stays')
  t.ok(await store.stat(digest), 'still cached')
  t.same(downloads.events.slice(-1), [`reseed ${digest.hex.slice(0, 6)}`], 'and seeded again')
  await t.rejects(cache.remove(digest), { code: 'BLOB_IN_USE' })
  done?.()
  await cache.remove(digest)
  t.notOk(await store.stat(digest), 'DELETE once the read ended')
  await cache.remove(digest) // idempotent
})
