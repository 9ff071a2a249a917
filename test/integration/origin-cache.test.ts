/**
 * The origin cache's eviction (issue 9), against real origins on loopback over the fs backend:
 * an idle blob is evicted by the periodic sweep and restored from the backend when asked; a
 * blob waiting for write-back is never evicted; above the high watermark the least recently
 * used blobs go until the low one.
 */
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { type Backend, FsBackend } from '../../lib/backend/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest, type InfoHash, type MetaInfo } from '../../lib/core/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { OriginClient } from '../../lib/origin/client/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { blobKey, OriginServer, type Seeder } from '../../lib/origin/server/index.js'
import type { TorrentStorage } from '../../lib/torrent/index.js'
import { tempDir } from '../helpers/files.js'
import { FlakyBackend } from '../helpers/flaky-backend.js'
import { metricValue, until, writtenBack } from '../helpers/writeback.js'

/** Records what the origin hands to its BitTorrent engine (the storage it would seed from). */
class RecordingSeeder implements Seeder {
  readonly seeded = new Map<string, TorrentStorage>()
  readonly removed: string[] = []
  seed(meta: MetaInfo, storage: TorrentStorage): void {
    this.seeded.set(meta.name, storage)
  }
  remove(infoHash: InfoHash): void {
    this.removed.push(infoHash.hex)
  }
}

async function startOrigin(t: Test, backend: Backend, cache: Record<string, unknown>, seeder?: Seeder) {
  const dir = await tempDir(t)
  const origin = new OriginServer(
    validateConfig(OriginConfigSchema, {
      log: { level: 'silent' },
      server: { host: '127.0.0.1', port: 0 },
      dataDir: join(dir, 'origin'),
      trackerUrl: 'http://tracker.test:15003',
      writeBack: { maxBackoffSeconds: 1 },
      cache,
    }),
    { logger: silentLogger(), backend, seeder, tagLookup: { tagsOf: async () => [] } },
  )
  await origin.start()
  t.teardown(() => origin.stop())
  return { origin, client: new OriginClient(origin.url) }
}

function blob(seed: number, size = 60_000) {
  const data = Buffer.alloc(size, seed)
  data.write(`blob ${seed}`)
  return { data, digest: Digest.fromBuffer(data) }
}

async function upload(client: OriginClient, b: { data: Buffer; digest: Digest }) {
  await client.upload('default', b.digest, Readable.from([b.data]), b.data.length)
}

/** GET until the origin has it back in its cache (202 while it fetches from the backend). */
async function download(client: OriginClient, digest: Digest): Promise<Buffer> {
  let out: Buffer | undefined
  await until(`a GET of ${digest}`, async () => {
    try {
      const chunks: Buffer[] = []
      for await (const c of await client.download('default', digest)) chunks.push(c as Buffer)
      out = Buffer.concat(chunks)
      return true
    } catch (err) {
      if ((err as { code?: string }).code === 'UNAVAILABLE') return false
      throw err
    }
  })
  return out as Buffer
}

t.test(
  'an idle blob is evicted and restored from the backend on a GET; a pending write-back never is',
  async (t) => {
    const fs = new FsBackend(join(await tempDir(t), 'backend'))
    const flaky = new FlakyBackend(fs)
    const idle = blob(1)
    const held = blob(2)
    const heldKey = blobKey('default', held.digest)
    flaky.down = (key) => key === heldKey // the backend refuses this one blob
    const { origin, client } = await startOrigin(t, flaky, { idleSeconds: 1, sweepIntervalSeconds: 1 })
    await upload(client, idle)
    await upload(client, held)
    await until(
      'the first blob written back',
      async () => (await fs.stat(blobKey('default', idle.digest))) !== undefined,
    )

    await until('the idle blob evicted', async () => (await origin.store.stat(idle.digest)) === undefined)
    // The file goes before its sweep counts it: join that sweep (a new one finds nothing to evict).
    await origin.sweepCache()
    t.equal(await metricValue(origin.registry, 'shoal_origin_cache_evicted_total', { reason: 'idle' }), 1)
    t.ok(await origin.store.stat(held.digest), 'the blob waiting for write-back is still cached')
    t.equal(await metricValue(origin.registry, 'shoal_origin_writeback_pending'), 1)
    // Sweeps go on (one a second): after several more it is still there.
    const failedBefore = await metricValue(origin.registry, 'shoal_origin_writeback_attempts_total', {
      result: 'failed',
    })
    await until(
      'two more failed write-back attempts',
      async () =>
        (await metricValue(origin.registry, 'shoal_origin_writeback_attempts_total', { result: 'failed' })) >=
        failedBefore + 2,
    )
    t.ok(await origin.store.stat(held.digest), 'still cached, sweeps later')
    t.same(await download(client, held.digest), held.data, 'and served')

    const restored = await download(client, idle.digest)
    t.equal(
      createHash('sha256').update(restored).digest('hex'),
      idle.digest.hex,
      'a GET of the evicted blob restores it from the backend',
    )
    t.ok(await origin.store.stat(idle.digest), 'back in the cache')

    flaky.down = () => false
    await writtenBack(origin.registry)
    await until(
      'the written-back blob evicted once idle',
      async () => (await origin.store.stat(held.digest)) === undefined,
    )
  },
)

t.test('above the high watermark the least recently used blobs go, down to the low one', async (t) => {
  const fs = new FsBackend(join(await tempDir(t), 'backend'))
  // Bytes (> 1): at most 150 kB cached, then down to 100 kB; no idle eviction, sweeps on demand.
  const { origin, client } = await startOrigin(t, fs, {
    idleSeconds: 0,
    highWatermark: 150_000,
    lowWatermark: 100_000,
    sweepIntervalSeconds: 3600,
  })
  const a = blob(3)
  const b = blob(4)
  const c = blob(5)
  for (const x of [a, b, c]) await upload(client, x)
  await writtenBack(origin.registry)
  t.equal(await metricValue(origin.registry, 'shoal_origin_cache_bytes'), 180_000)
  await download(client, a.digest) // a is now the most recently used

  t.equal(await origin.sweepCache(), 2, 'two blobs evicted to get under the low watermark')
  t.ok(await origin.store.stat(a.digest), 'the most recently used stays')
  t.equal(await origin.store.stat(b.digest), undefined, 'the least recently used go')
  t.equal(await origin.store.stat(c.digest), undefined)
  t.equal(await metricValue(origin.registry, 'shoal_origin_cache_evicted_total', { reason: 'watermark' }), 2)
  t.equal(await metricValue(origin.registry, 'shoal_origin_cache_bytes'), 60_000)
  t.equal(await origin.sweepCache(), 0, 'under the watermark: nothing more')
  t.same(await download(client, c.digest), c.data, 'an evicted blob is fetched back')
})

t.test(
  'a blob whose torrent is active (the engine reads it) is not evicted; an idle seeded one is',
  async (t) => {
    const fs = new FsBackend(join(await tempDir(t), 'backend'))
    const seeder = new RecordingSeeder()
    const { origin, client } = await startOrigin(t, fs, { idleSeconds: 1, sweepIntervalSeconds: 1 }, seeder)
    const busy = blob(6)
    const quiet = blob(7)
    for (const x of [busy, quiet]) await upload(client, x)
    await writtenBack(origin.registry)
    // An agent downloading it: the engine reads pieces (its seed file stays open 30 s after).
    const storage = seeder.seeded.get(busy.digest.hex)
    t.ok(storage && seeder.seeded.has(quiet.digest.hex), 'both handed to the engine')
    await storage?.readBlock(0, 0, 1000)

    await until('the quiet blob evicted', async () => (await origin.store.stat(quiet.digest)) === undefined)
    t.equal(seeder.removed.length, 1, 'its torrent was taken back from the engine')
    t.ok(await origin.store.stat(busy.digest), 'the blob being seeded stays')
    t.ok(
      (await storage?.readBlock(0, 0, 10))?.equals(busy.data.subarray(0, 10)),
      'and is still served to peers',
    )
  },
)
