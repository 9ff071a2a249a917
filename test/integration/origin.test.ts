import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { FsBackend } from '../../lib/backend/fs.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest, type InfoHash, MetaInfo } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { OriginClient } from '../../lib/origin/client/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { blobKey, defaultSelf, OriginServer, type Seeder } from '../../lib/origin/server/index.js'
import { Seeds } from '../../lib/origin/server/seeder.js'
import { BlobStore, type SeedFile } from '../../lib/store/index.js'
import type { TorrentStorage } from '../../lib/torrent/index.js'
import { writtenBack } from '../helpers/writeback.js'

const TRACKER = 'http://tracker.test:15003'

class RecordingSeeder implements Seeder {
  readonly seeded = new Map<string, { meta: MetaInfo; storage: TorrentStorage }>()
  readonly removed: string[] = []
  calls = 0
  seed(meta: MetaInfo, storage: TorrentStorage): void {
    this.calls++
    this.seeded.set(meta.infoHash.hex, { meta, storage })
  }
  remove(infoHash: InfoHash): void {
    this.removed.push(infoHash.hex)
    this.seeded.delete(infoHash.hex)
  }
}

async function startOrigin(
  t: Test,
  opts: { dir?: string; seeder?: Seeder; chunkLimit?: number; config?: Record<string, unknown> } = {},
) {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'shoal-origin-')))
  if (!opts.dir) t.teardown(() => rm(dir, { recursive: true, force: true }))
  const config = validateConfig(OriginConfigSchema, {
    log: { level: 'silent' },
    server: { host: '127.0.0.1', port: 0 },
    dataDir: join(dir, 'data'),
    backend: { type: 'fs', root: join(dir, 'backend') },
    trackerUrl: TRACKER,
    uploadChunkLimit: opts.chunkLimit ?? 64 << 20,
    ...opts.config,
  })
  const backend = new FsBackend(join(dir, 'backend'))
  // No build-index here: nothing is tagged (test/integration/origin-delete.test.ts runs a real one).
  const tagLookup = { tagsOf: async () => [] }
  const origin = new OriginServer(config, { logger: silentLogger(), backend, seeder: opts.seeder, tagLookup })
  await origin.start()
  await origin.start()
  t.teardown(() => origin.stop())
  return { origin, backend, client: new OriginClient(origin.url), dir }
}

function random(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size)
  let x = seed
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    out[i] = x >>> 24
  }
  return out
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 5000): Promise<T> {
  const until = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function errorOf(p: Promise<unknown>): Promise<{ code?: string; status?: number; message?: string }> {
  try {
    await p
  } catch (err) {
    return isShoalError(err) ? err : { message: String(err) }
  }
  return {}
}

t.test('upload in chunks, then HEAD, GET, ranges, metainfo, locations, delete', async (t) => {
  const seeder = new RecordingSeeder()
  const { origin, backend, client } = await startOrigin(t, { seeder, chunkLimit: 128 << 10 })
  const data = random(700_000, 1)
  const digest = Digest.fromBuffer(data)

  t.equal(await client.stat('default', digest), undefined, 'unknown before upload')
  t.same(await client.upload('default', digest, Readable.from([data]), data.length, { chunkSize: 100_000 }), {
    existed: false,
  })
  t.same(await client.stat('default', digest), { size: data.length, pending: false }, 'HEAD after commit')
  t.ok((await readAll(await client.download('default', digest))).equals(data), 'GET returns the bytes')
  t.ok(
    (await readAll(await client.download('default', digest, { start: 1000, end: 1999 }))).equals(
      data.subarray(1000, 2000),
    ),
    'range',
  )
  t.ok(
    (await readAll(await client.download('default', digest, { start: 699_990 }))).equals(
      data.subarray(699_990),
    ),
    'open range',
  )
  const res = await fetch(`${origin.url}/namespace/default/blobs/${digest}`, {
    headers: { range: 'bytes=-10' },
  })
  t.equal(res.status, 206)
  t.equal(res.headers.get('content-range'), `bytes 699990-699999/${data.length}`)
  t.ok(Buffer.from(await res.arrayBuffer()).equals(data.subarray(-10)), 'suffix range')
  const unsat = await fetch(`${origin.url}/namespace/default/blobs/${digest}`, {
    headers: { range: 'bytes=800000-' },
  })
  t.equal(unsat.status, 416, 'unsatisfiable range')
  await unsat.body?.cancel()

  const meta = MetaInfo.parse(await client.metainfo('default', digest))
  t.equal(meta.name, digest.hex, 'name is the hex digest')
  t.equal(meta.announce, `${TRACKER}/announce`, 'announces to our tracker only')
  t.equal(meta.private, true, 'private torrent')
  t.equal(meta.length, data.length)
  t.ok(seeder.seeded.has(meta.infoHash.hex), 'handed to the seeder at commit')
  const storage = seeder.seeded.get(meta.infoHash.hex)?.storage
  t.ok(
    storage &&
      (await storage.readBlock(1, 0, 100)).equals(data.subarray(meta.pieceLength, meta.pieceLength + 100)),
    'seed storage reads the blob',
  )

  await writtenBack(origin.registry)
  const stored = await readAll(await backend.get(blobKey('default', digest)))
  t.ok(stored.equals(data), `written back to the backend as ${blobKey('default', digest)}`)
  t.same(await client.locations(digest), [origin.self], 'locations: the ring of one')
  t.same(
    await client.upload('default', digest, Readable.from([data]), data.length),
    { existed: true },
    'an existing blob is not sent again',
  )

  // Another origin computes the same infohash for the same bytes.
  const other = await startOrigin(t)
  await other.client.upload('default', digest, Readable.from([data]), data.length, { chunkSize: 300_000 })
  const meta2 = MetaInfo.parse(await other.client.metainfo('default', digest))
  t.equal(meta2.infoHash.hex, meta.infoHash.hex, 'infohash is stable across origins')

  const big = await fetch(
    `${origin.url}/namespace/default/blobs/${Digest.fromBuffer(Buffer.from('x'))}/uploads`,
    { method: 'POST' },
  )
  const { uid } = (await big.json()) as { uid: string }
  t.equal(big.status, 202)
  t.match(big.headers.get('location'), new RegExp(`/uploads/${uid}$`))
  const tooBig = await fetch(`${origin.url}/namespace/default/blobs/${digest}/uploads/${uid}`, {
    method: 'PATCH',
    headers: { 'content-range': `0-${(200 << 10) - 1}` },
    body: Buffer.alloc(200 << 10),
  })
  t.equal(tooBig.status, 413, 'a chunk over uploadChunkLimit')
  await tooBig.body?.cancel()

  await client.deleteBlob('default', digest)
  t.equal(await client.stat('default', digest), undefined, 'gone after DELETE')
  t.equal(await backend.stat(blobKey('default', digest)), undefined, 'and gone from the backend')
  t.same(seeder.removed, [meta.infoHash.hex], 'seeding stopped')
  t.equal(
    (await errorOf(client.metainfo('default', digest))).code,
    'BLOB_NOT_FOUND',
    'metainfo of an unknown blob is 404',
  )
})

t.test('a wrong digest at commit stores nothing', async (t) => {
  const { origin, backend, client } = await startOrigin(t)
  const data = random(50_000, 2)
  const claimed = Digest.fromBuffer(Buffer.from('something else'))
  const err = await errorOf(
    client.upload('default', claimed, Readable.from([data]), data.length, { chunkSize: 16_000 }),
  )
  t.equal(err.code, 'DIGEST_MISMATCH')
  t.equal(err.status, 400)
  t.match(err.message, /hashes to sha256:/)
  t.equal(await client.stat('default', claimed), undefined, 'HEAD is 404')
  t.same((await backend.list('')).keys, [], 'backend is empty')
  t.same(await readdir(join(origin.store.root, 'uploads')), [], 'the upload is gone')
})

t.test('a blob only in the backend: 202 while fetching, then 200 with the same bytes', async (t) => {
  const seeder = new RecordingSeeder()
  const { backend, client } = await startOrigin(t, { seeder })
  const data = random(3 << 20, 3)
  const digest = Digest.fromBuffer(data)
  await backend.put(blobKey('default', digest), data)
  const first = await client.stat('default', digest)
  t.same(first, { size: data.length, pending: true }, 'HEAD answers 202 with the size')
  const done = await waitFor('fetch', async () => {
    const s = await client.stat('default', digest)
    return s && !s.pending ? s : undefined
  })
  t.equal(done.size, data.length)
  t.ok((await readAll(await client.download('default', digest))).equals(data), 'identical bytes')
  const meta = MetaInfo.parse(await client.metainfo('default', digest))
  t.equal(meta.length, data.length)
  const seeded = await waitFor('seeding', async () => seeder.seeded.get(meta.infoHash.hex))
  t.equal(seeded.meta.length, data.length, 'seeded after the fetch, the whole blob')
  t.equal(
    await client.stat('other-ns', Digest.fromBuffer(Buffer.from('nope'))),
    undefined,
    'unknown everywhere: 404',
  )

  // A corrupt backend copy is never served: the fetch fails its sha256 and HEAD reports it.
  const bad = Digest.fromBuffer(Buffer.from('the real bytes'))
  await backend.put(blobKey('default', bad), Buffer.from('corrupted bytes'))
  const err = await waitFor('the failed fetch', async () => {
    const e = await errorOf(client.stat('default', bad))
    return e.code ? e : undefined
  })
  t.equal(err.status, 502, 'HEAD reports the failed fetch as 502')
  const got = await errorOf(client.download('default', bad))
  t.equal(got.code, 'BLOB_CORRUPT', 'GET names it: corrupt in the backend, refused')
  t.match(got.message, /hashes to sha256:/)
  t.equal(await client.stat('default', digest).then((s) => s?.pending), false, 'other blobs are unaffected')
})

async function metricValue(origin: OriginServer, name: string, labels: Record<string, string>) {
  const m = (await origin.registry.getMetricsAsJSON()).find((x) => x.name === name)
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l))
  return Number(v?.value ?? 0)
}

/** Flips one byte in the middle of a file, as a failing disk would. */
async function flipByte(path: string): Promise<void> {
  const bytes = await readFile(path)
  bytes[bytes.length >> 1]! ^= 0x01
  await writeFile(path, bytes)
}

t.test(
  'verify: an intact copy is left alone; a corrupt one is dropped, restored and re-seeded',
  async (t) => {
    const seeder = new RecordingSeeder()
    const { origin, client } = await startOrigin(t, { seeder })
    const data = random(1 << 20, 5)
    const digest = Digest.fromBuffer(data)
    await client.upload('default', digest, Readable.from([data]), data.length)
    const meta = MetaInfo.parse(await client.metainfo('default', digest))
    await waitFor('seeding', async () => (seeder.seeded.has(meta.infoHash.hex) ? true : undefined))

    const ok = await client.verify('default', digest, { piece: 1, reporter: 'test' })
    t.equal(ok.state, 'ok', 'an intact copy is reported intact')
    t.equal(seeder.removed.length, 0, 'and keeps being seeded')
    t.equal(await metricValue(origin, 'shoal_origin_corrupt_blobs_total', { source: 'cache' }), 0)

    const other = random(300_000, 6)
    const otherDigest = Digest.fromBuffer(other)
    await client.upload('default', otherDigest, Readable.from([other]), other.length)
    await flipByte(origin.store.blobPath(otherDigest))
    const fixed = await client.verify('default', otherDigest, { piece: 0 })
    t.equal(fixed.state, 'restored', 'a corrupt copy is restored from the backend before the answer')
    t.ok(
      (await readAll(await client.download('default', otherDigest))).equals(other),
      'the bytes are right again',
    )
    t.equal(await metricValue(origin, 'shoal_origin_corrupt_blobs_total', { source: 'cache' }), 1, 'counted')
    const otherMeta = MetaInfo.parse(await client.metainfo('default', otherDigest))
    t.ok(seeder.removed.includes(otherMeta.infoHash.hex), 'the corrupt copy stopped being seeded')
    t.ok(seeder.seeded.has(otherMeta.infoHash.hex), 'the restored copy is seeded again')

    // Rate limit: within verifyIntervalSeconds a report gets the last verdict, nothing is re-hashed.
    await flipByte(origin.store.blobPath(otherDigest))
    const again = await Promise.all([1, 2, 3].map(() => client.verify('default', otherDigest, {})))
    t.same(
      again.map((r) => r.state),
      ['restored', 'restored', 'restored'],
      'reports within the interval share the last verdict',
    )
    t.equal(
      await metricValue(origin, 'shoal_origin_corrupt_blobs_total', { source: 'cache' }),
      1,
      'no re-hash',
    )
    const bad = await errorOf(client.verify('default', otherDigest, { piece: -1 } as never))
    t.equal(bad.code, 'BAD_REQUEST', 'a malformed report is refused')
  },
)

t.test(
  'verify: corrupt in the cache and in the backend: refused as BLOB_CORRUPT, counted twice',
  async (t) => {
    const seeder = new RecordingSeeder()
    const { origin, backend, client } = await startOrigin(t, { seeder })
    const data = random(500_000, 7)
    const digest = Digest.fromBuffer(data)
    await client.upload('default', digest, Readable.from([data]), data.length)
    await flipByte(origin.store.blobPath(digest))
    const rotten = Buffer.from(data)
    rotten[10]! ^= 0xff
    await backend.put(blobKey('default', digest), rotten)

    const err = await errorOf(client.verify('default', digest, { piece: 0 }))
    t.equal(err.code, 'BLOB_CORRUPT')
    t.equal(err.status, 502)
    t.match(err.message, /backend's copy .* is corrupt .*refuses to serve it/)
    t.equal(await metricValue(origin, 'shoal_origin_corrupt_blobs_total', { source: 'cache' }), 1)
    t.equal(await metricValue(origin, 'shoal_origin_corrupt_blobs_total', { source: 'backend' }), 1)
    t.equal(await origin.store.stat(digest), undefined, 'the corrupt cached copy is gone')
    t.equal((await errorOf(client.download('default', digest))).code, 'BLOB_CORRUPT', 'GET refuses it')
    t.equal((await errorOf(client.metainfo('default', digest))).code, 'BLOB_CORRUPT', 'and its metainfo')
    t.equal(seeder.seeded.size, 0, 'nothing is seeded')
  },
)

t.test('bad requests: digest, namespace, Content-Range, offsets', async (t) => {
  const { origin } = await startOrigin(t)
  const base = origin.url
  const badDigest = await fetch(`${base}/namespace/default/blobs/sha256:xyz`)
  t.equal(badDigest.status, 400)
  t.equal(((await badDigest.json()) as { code: string }).code, 'INVALID_DIGEST')
  const badNs = await fetch(`${base}/namespace/..%2Fetc/blobs/${Digest.fromBuffer(Buffer.from('a'))}`)
  t.equal(badNs.status, 400, 'bad namespace')
  await badNs.body?.cancel()
  const loc = await fetch(`${base}/blobs/nope/locations`)
  t.equal(loc.status, 400, 'bad digest in locations')
  await loc.body?.cancel()

  const data = Buffer.from('0123456789')
  const digest = Digest.fromBuffer(data)
  const started = await fetch(`${base}/namespace/default/blobs/${digest}/uploads`, { method: 'POST' })
  const { uid } = (await started.json()) as { uid: string }
  const path = `${base}/namespace/default/blobs/${digest}/uploads/${uid}`
  const patch = (range: string | undefined, body: Buffer) =>
    fetch(path, { method: 'PATCH', headers: range === undefined ? {} : { 'content-range': range }, body })
  for (const range of [undefined, 'garbage', '5-2', 'bytes=a-b']) {
    const r = await patch(range, data)
    t.equal(r.status, 416, `Content-Range ${range ?? '(missing)'}`)
    await r.body?.cancel()
  }
  const wrongStart = await patch('5-14', data)
  t.equal(wrongStart.status, 416, 'a start that is not the current offset')
  const body = (await wrongStart.json()) as { code: string; details?: { offset: number } }
  t.equal(body.code, 'INVALID_RANGE')
  t.same(body.details, { offset: 0 }, 'the error tells the current offset')
  const mismatch = await patch('0-4', data)
  t.equal(mismatch.status, 400, 'a body longer than its range')
  await mismatch.body?.cancel()
  const ok = await patch('0-9', data)
  t.equal(ok.status, 204)
  const commit = await fetch(path, { method: 'PUT' })
  t.equal(commit.status, 201)
  t.same(await commit.json(), { digest: digest.toString(), size: 10 })
  const again = await fetch(path, { method: 'PUT' })
  t.equal(again.status, 404, 'a committed upload is gone')
  await again.body?.cancel()
  const exists = await fetch(`${base}/namespace/default/blobs/${digest}/uploads`, { method: 'POST' })
  t.equal(exists.status, 409)
  t.equal(((await exists.json()) as { code: string }).code, 'ALREADY_EXISTS')
  const ready = await fetch(`${base}/readiness`)
  t.equal(ready.status, 200, 'ready')
  await ready.body?.cancel()
})

t.test('restart: cached blobs are seeded again, empty blobs work', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-origin-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const data = random(100_000, 4)
  const digest = Digest.fromBuffer(data)
  const empty = Digest.fromBuffer(Buffer.alloc(0))
  const first = await startOrigin(t, { dir })
  await first.client.upload('default', digest, Readable.from([data]), data.length)
  t.same(
    await first.client.upload('default', empty, Readable.from([]), 0),
    { existed: false },
    'an empty blob uploads',
  )
  t.same(await first.client.stat('default', empty), { size: 0, pending: false })
  t.equal((await readAll(await first.client.download('default', empty))).length, 0)
  await first.origin.stop()
  await first.origin.stop()

  const seeder = new RecordingSeeder()
  const second = await startOrigin(t, { dir, seeder })
  const meta = MetaInfo.parse(await second.client.metainfo('default', digest))
  t.ok(seeder.seeded.has(meta.infoHash.hex), 're-seeded at start')
  t.equal(seeder.seeded.size, 1, 'the empty blob has nothing to seed')
})

/** This host's first non-internal IPv4 address, if any (what a wildcard-bound origin advertises). */
function firstExternalIPv4(): string | undefined {
  for (const addrs of Object.values(networkInterfaces()))
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  return undefined
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

t.test('self: the advertised address other hosts are told to upload to', async (t) => {
  const iface = (address: string, family: 'IPv4' | 'IPv6', internal: boolean) =>
    ({ address, family, internal, netmask: '', mac: '', cidr: null }) as never
  const interfaces = {
    lo: [iface('127.0.0.1', 'IPv4', true), iface('::1', 'IPv6', true)],
    eth0: [iface('fe80::1', 'IPv6', false), iface('10.1.2.3', 'IPv4', false)],
    eth1: [iface('192.168.0.9', 'IPv4', false)],
  }
  const loopbackOnly = { lo: [iface('127.0.0.1', 'IPv4', true)] }
  t.same(defaultSelf('10.9.9.9', 15002, interfaces), { self: '10.9.9.9:15002', source: 'server.host' })
  t.same(defaultSelf('origin-1.example', 15002, interfaces), {
    self: 'origin-1.example:15002',
    source: 'server.host',
  })
  t.same(defaultSelf('fd00::5', 15002, interfaces), { self: '[fd00::5]:15002', source: 'server.host' })
  for (const wildcard of ['0.0.0.0', '::', '']) {
    t.same(
      defaultSelf(wildcard, 15002, interfaces),
      { self: '10.1.2.3:15002', source: 'interface' },
      `"${wildcard}": the first non-internal IPv4`,
    )
    t.same(
      defaultSelf(wildcard, 15002, loopbackOnly),
      { self: '127.0.0.1:15002', source: 'loopback' },
      `"${wildcard}" without one: loopback`,
    )
  }
  const digest = Digest.fromBuffer(Buffer.from('where'))

  // Bound to every address: locations name this host's external address, not 127.0.0.1.
  const wild = await startOrigin(t, { config: { server: { host: '0.0.0.0', port: 0 } } })
  const port = new URL(wild.origin.url).port
  const expected = `${firstExternalIPv4() ?? '127.0.0.1'}:${port}`
  t.equal(wild.origin.self, expected, 'wildcard bind: self is the first non-internal IPv4')
  t.same(await wild.client.locations(digest), [expected], 'and the ring of one is that address')

  // Bound to one specific address: that address.
  const external = firstExternalIPv4()
  if (external) {
    const bound = await startOrigin(t, { config: { server: { host: external, port: 0 } } })
    const p = new URL(bound.origin.url).port
    t.same(await bound.client.locations(digest), [`${external}:${p}`], 'specific bind: that address')
  }

  // Explicit self and ring stay as configured.
  const explicit = await startOrigin(t, {
    config: { self: 'origin-b:15002', hashring: { nodes: ['origin-a:15002', 'origin-b:15002'] } },
  })
  t.equal(explicit.origin.self, 'origin-b:15002')
  const owners = await explicit.client.locations(digest)
  t.equal(owners.length, 1)
  t.ok(['origin-a:15002', 'origin-b:15002'].includes(owners[0] as string), 'an owner from hashring.nodes')
})

t.test('seeds: concurrent adds open one file; a remove while opening closes it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-seeds-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const store = new BlobStore(dir)
  await store.init()
  const data = random(300_000, 5)
  const digest = Digest.fromBuffer(data)
  await store.putStream(digest, Readable.from([data]))
  const meta = await MetaInfo.create(store.blobPath(digest), {
    name: digest.hex,
    announce: `${TRACKER}/announce`,
    size: data.length,
  })
  const opened: SeedFile[] = []
  const openSeed = store.openSeed.bind(store)
  store.openSeed = async (d, layout) => {
    const file = await openSeed(d, layout)
    opened.push(file)
    return file
  }
  const allClosed = () => opened.every((f) => !f.hasPiece(0))
  const seeder = new RecordingSeeder()
  const seeds = new Seeds(store, seeder, silentLogger())

  // Two commits (or a commit and a backend fetch) of one blob at the same time.
  await Promise.all([seeds.add(digest, meta), seeds.add(digest, meta)])
  t.equal(opened.length, 1, 'one seed file opened')
  t.equal(seeder.calls, 1, 'handed to the engine once')
  t.equal(seeds.count, 1)
  await seeds.remove(digest)
  t.same(seeder.removed, [meta.infoHash.hex], 'taken back from the engine')
  t.ok(allClosed(), 'and no seed file is left open')

  // A delete while the file is still opening: the file is closed and never seeded.
  const adding = seeds.add(digest, meta)
  await seeds.remove(digest)
  await adding
  t.equal(opened.length, 2)
  t.equal(seeder.calls, 1, 'not handed to the engine after its removal')
  t.equal(seeds.count, 0)
  t.ok(allClosed(), 'the file opened for it is closed')

  // Shutdown while opening, then nothing new is seeded.
  const late = seeds.add(digest, meta)
  await seeds.close()
  await late
  await seeds.add(digest, meta)
  t.equal(seeder.calls, 1, 'nothing seeded during or after close()')
  t.equal(seeds.count, 0)
  t.ok(allClosed(), 'every seed file closed by close()')
})

t.test(
  'stop() aborts a commit in progress and waits for it: nothing is stored or seeded later',
  async (t) => {
    const seeder = new RecordingSeeder()
    const { origin, backend } = await startOrigin(t, { seeder })
    const data = random(200_000, 6)
    const digest = Digest.fromBuffer(data)
    const base = `${origin.url}/namespace/default/blobs/${digest}/uploads`
    const { uid } = (await (await fetch(base, { method: 'POST' })).json()) as { uid: string }
    const patched = await fetch(`${base}/${uid}`, {
      method: 'PATCH',
      headers: { 'content-range': `0-${data.length - 1}` },
      body: data,
    })
    t.equal(patched.status, 204)

    // Hold the commit for a moment, so stop() arrives while it is running.
    const commitUpload = origin.store.commitUpload.bind(origin.store)
    let entered: () => void = () => undefined
    const inCommit = new Promise<void>((r) => {
      entered = r
    })
    let settled = false
    origin.store.commitUpload = async (id, expected, signal) => {
      entered()
      try {
        await sleep(200)
        return await commitUpload(id, expected, signal)
      } finally {
        settled = true
      }
    }
    const put = fetch(`${base}/${uid}`, { method: 'PUT' }).then(
      (r) => r.status,
      () => 'connection closed',
    )
    await inCommit
    await origin.stop()
    t.ok(settled, 'the commit had ended when stop() resolved')
    t.not(await put, 201, 'the commit was not acknowledged')
    await sleep(300)
    t.equal(await origin.store.stat(digest), undefined, 'nothing entered the cache after stop()')
    t.same(await readdir(join(origin.store.root, 'uploads')), [uid], 'the upload is kept to commit later')
    t.same((await backend.list('')).keys, [], 'nothing written back')
    t.equal(seeder.calls, 0, 'nothing seeded')
  },
)
