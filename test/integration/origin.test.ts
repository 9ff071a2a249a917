import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
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
import { blobKey, OriginServer, type Seeder, type SeedStorage } from '../../lib/origin/server/index.js'

const TRACKER = 'http://tracker.test:15003'

class RecordingSeeder implements Seeder {
  readonly seeded = new Map<string, { meta: MetaInfo; storage: SeedStorage }>()
  readonly removed: string[] = []
  seed(meta: MetaInfo, storage: SeedStorage): void {
    this.seeded.set(meta.infoHash.hex, { meta, storage })
  }
  remove(infoHash: InfoHash): void {
    this.removed.push(infoHash.hex)
    this.seeded.delete(infoHash.hex)
  }
}

async function startOrigin(t: Test, opts: { dir?: string; seeder?: Seeder; chunkLimit?: number } = {}) {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'shoal-origin-')))
  if (!opts.dir) t.teardown(() => rm(dir, { recursive: true, force: true }))
  const config = validateConfig(OriginConfigSchema, {
    log: { level: 'silent' },
    server: { host: '127.0.0.1', port: 0 },
    dataDir: join(dir, 'data'),
    backend: { type: 'fs', root: join(dir, 'backend') },
    trackerUrl: TRACKER,
    uploadChunkLimit: opts.chunkLimit ?? 64 << 20,
  })
  const backend = new FsBackend(join(dir, 'backend'))
  const origin = new OriginServer(config, { logger: silentLogger(), backend, seeder: opts.seeder })
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
  await waitFor('seeding', async () => (seeder.seeded.has(meta.infoHash.hex) ? true : undefined))
  t.pass('seeded after the fetch')
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
  t.equal(got.code, 'BACKEND_ERROR', 'GET names it')
  t.match(got.message, /hashes to sha256:/)
  t.equal(await client.stat('default', digest).then((s) => s?.pending), false, 'other blobs are unaffected')
})

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
