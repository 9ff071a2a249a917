import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { Digest } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import { ioError } from '../../lib/store/fsutil.js'
import { BlobStore } from '../../lib/store/index.js'
import { until } from '../helpers/torrent.js'

async function tempStore(t: Test, opts: ConstructorParameters<typeof BlobStore>[1] = {}): Promise<BlobStore> {
  const root = await mkdtemp(join(tmpdir(), 'shoal-store-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const store = new BlobStore(root, opts)
  await store.init()
  return store
}

async function code(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p)
    return undefined
  } catch (err) {
    return isShoalError(err) ? err.code : `not a ShoalError: ${String(err)}`
  }
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

function random(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size)
  let x = seed
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    out[i] = x >>> 24
  }
  return out
}

/** Every file under the store's cache/ folder, relative. */
async function cacheFiles(store: BlobStore): Promise<string[]> {
  const out: string[] = []
  const cache = join(store.root, 'cache')
  for (const shard of await readdir(cache))
    for (const f of await readdir(join(cache, shard))) out.push(`${shard}/${f}`)
  return out.sort()
}

t.test('upload → commit: nothing in the cache before commit, then exactly the blob', async (t) => {
  const store = await tempStore(t)
  const data = random(300_000)
  const digest = Digest.fromBuffer(data)
  const uid = await store.createUpload()
  t.match(uid, /^[A-Za-z0-9_-]{1,64}$/)
  t.equal(await store.uploadOffset(uid), 0)
  let offset = 0
  for (const part of [data.subarray(0, 100_000), data.subarray(100_000, 250_000), data.subarray(250_000)]) {
    offset = await store.appendUpload(
      uid,
      offset,
      Readable.from([part.subarray(0, 10), part.subarray(10)]),
      part.length,
    )
    t.same(await cacheFiles(store), [], `nothing in the cache at offset ${offset}`)
    t.equal(await store.stat(digest), undefined)
  }
  t.equal(offset, data.length)
  t.same(await store.commitUpload(uid, digest), { size: data.length })
  t.same(
    await cacheFiles(store),
    [`${digest.hex.slice(0, 2)}/${digest.hex}`],
    'the blob, under its final name',
  )
  t.same(await store.stat(digest), { size: data.length })
  t.ok((await readAll(store.createReadStream(digest))).equals(data), 'reads back')
  t.ok(
    (await readAll(store.createReadStream(digest, { start: 5, end: 9 }))).equals(data.subarray(5, 10)),
    'range',
  )
  t.equal(await code(store.uploadOffset(uid)), 'UPLOAD_NOT_FOUND', 'the upload is gone after commit')
  t.same(await readdir(join(store.root, 'uploads')), [])
  t.same(await readdir(join(store.root, 'tmp')), [], 'no temp files left')
  const listed: string[] = []
  for await (const d of store.list()) listed.push(d.toString())
  t.same(listed, [digest.toString()])
})

t.test('commit with the wrong digest stores nothing and deletes the upload', async (t) => {
  const store = await tempStore(t)
  const uid = await store.createUpload()
  await store.appendUpload(uid, 0, Readable.from([Buffer.from('hello')]), 5)
  const wrong = Digest.fromBuffer(Buffer.from('other'))
  try {
    await store.commitUpload(uid, wrong)
    t.fail('commit should fail')
  } catch (err) {
    t.equal((err as { code?: string }).code, 'DIGEST_MISMATCH')
    t.match((err as Error).message, /hashes to sha256:[0-9a-f]{64}, not sha256:/)
  }
  t.same(await cacheFiles(store), [], 'nothing stored')
  t.equal(await code(store.uploadOffset(uid)), 'UPLOAD_NOT_FOUND', 'the upload was discarded')
  t.equal(await store.stat(wrong), undefined)
})

t.test('append: offsets, sizes, all-or-nothing chunks, bad ids', async (t) => {
  const store = await tempStore(t)
  const uid = await store.createUpload()
  await store.appendUpload(uid, 0, Readable.from([Buffer.from('abc')]), 3)
  try {
    await store.appendUpload(uid, 0, Readable.from([Buffer.from('abc')]), 3)
    t.fail('a stale offset must fail')
  } catch (err) {
    t.equal((err as { code?: string }).code, 'INVALID_RANGE')
    t.same((err as { details?: unknown }).details, { offset: 3 }, 'details tell the current offset')
  }
  t.equal(
    await code(store.appendUpload(uid, 3, Readable.from([Buffer.from('defg')]), 3)),
    'SIZE_MISMATCH',
    'longer body',
  )
  t.equal(await store.uploadOffset(uid), 3, 'a failed chunk is rolled back')
  t.equal(
    await code(store.appendUpload(uid, 3, Readable.from([Buffer.from('de')]), 3)),
    'SIZE_MISMATCH',
    'shorter body',
  )
  t.equal(await store.uploadOffset(uid), 3, 'rolled back again')
  // A client that disconnects mid-chunk.
  const body = new PassThrough()
  const ctl = new AbortController()
  const pending = store.appendUpload(uid, 3, body, 1000, ctl.signal)
  body.write(Buffer.alloc(500))
  await new Promise((r) => setTimeout(r, 10))
  t.equal(
    await code(store.appendUpload(uid, 3, Readable.from([Buffer.from('x')]), 1)),
    'UPLOAD_CONFLICT',
    'one writer at a time',
  )
  ctl.abort()
  t.equal(await code(pending), 'ABORTED')
  t.equal(await store.uploadOffset(uid), 3, 'an aborted chunk is rolled back')
  t.equal(await code(store.uploadOffset('../etc')), 'BAD_REQUEST', 'uids are validated')
  t.equal(await code(store.appendUpload('nope', 0, Readable.from([]), 0)), 'UPLOAD_NOT_FOUND')
  await store.deleteUpload(uid)
  await store.deleteUpload(uid)
  t.equal(await code(store.uploadOffset(uid)), 'UPLOAD_NOT_FOUND', 'deleted (twice is fine)')
})

t.test('putStream verifies, temp files are never visible, init cleans up', async (t) => {
  const store = await tempStore(t)
  const data = random(2 << 20, 7)
  const digest = Digest.fromBuffer(data)
  const body = new PassThrough()
  const putting = store.putStream(digest, body)
  body.write(data.subarray(0, 1 << 20))
  // Polled, not slept on: on a loaded machine the temp file may take a while to appear.
  t.ok(
    await until(async () => (await readdir(join(store.root, 'tmp'))).length === 1),
    'the partial data is in tmp/',
  )
  t.equal(await store.stat(digest), undefined, 'not visible while being written')
  body.end(data.subarray(1 << 20))
  t.same(await putting, { size: data.length })
  t.same(await store.stat(digest), { size: data.length })
  t.same(await readdir(join(store.root, 'tmp')), [])

  const bad = Digest.fromBuffer(Buffer.from('x'))
  t.equal(await code(store.putStream(bad, Readable.from([Buffer.from('y')]))), 'DIGEST_MISMATCH')
  t.equal(await store.stat(bad), undefined, 'a mismatch stores nothing')
  t.same(await readdir(join(store.root, 'tmp')), [], 'and leaves no temp file')

  await writeFile(join(store.root, 'tmp', 'tmp-crashed'), 'partial')
  await new BlobStore(store.root).init()
  t.same(await readdir(join(store.root, 'tmp')), [], 'init removes stale temp files')
  t.same(await store.stat(digest), { size: data.length }, 'and keeps the cache')
})

t.test('cache: read bounds, metainfo sidecar, delete', async (t) => {
  const store = await tempStore(t)
  const data = Buffer.from('0123456789')
  const digest = Digest.fromBuffer(data)
  await store.putStream(digest, Readable.from([data]))
  t.equal(
    await code(() => store.createReadStream(digest, { start: 5, end: 10 })),
    'INVALID_RANGE',
    'end past the blob',
  )
  t.equal(
    await code(() => store.createReadStream(digest, { start: 4, end: 3 })),
    'INVALID_RANGE',
    'end before start',
  )
  t.equal(
    await code(() => store.createReadStream(digest, { start: -1, end: 3 })),
    'INVALID_RANGE',
    'negative',
  )
  const absent = Digest.fromBuffer(Buffer.from('absent'))
  t.equal(await code(() => store.createReadStream(absent)), 'BLOB_NOT_FOUND')
  t.equal(await store.readMetaInfo(digest), undefined)
  await store.writeMetaInfo(digest, Buffer.from('d4:infod6:lengthi10eee'))
  t.equal((await store.readMetaInfo(digest))?.toString(), 'd4:infod6:lengthi10eee')
  await store.delete(digest)
  t.equal(await store.stat(digest), undefined)
  t.equal(await store.readMetaInfo(digest), undefined, 'delete removes the sidecar too')
  await t.resolves(store.delete(digest), 'delete is idempotent')
})

t.test('PieceFile: out-of-order writes, resume after close, finish verifies', async (t) => {
  const store = await tempStore(t, { bitfieldFlushMs: 5 })
  const pieceLength = 16 << 10
  const data = random(pieceLength * 5 + 1234, 3)
  const digest = Digest.fromBuffer(data)
  const layout = { length: data.length, pieceLength, pieceCount: 6 }
  const piece = (i: number) => data.subarray(i * pieceLength, Math.min(data.length, (i + 1) * pieceLength))

  const a = await store.openDownload(digest, layout)
  t.equal(a.pieceCount, 6)
  t.equal(a.missingCount(), 6)
  await a.writePiece(5, piece(5))
  await a.writePiece(2, piece(2))
  t.ok(a.hasPiece(5) && a.hasPiece(2) && !a.hasPiece(0), 'bits set for written pieces only')
  t.ok(
    (await a.readBlock(5, 100, 1000)).equals(piece(5).subarray(100, 1100)),
    'positional read inside a piece',
  )
  t.equal(await code(a.readBlock(0, 0, 10)), 'INVALID_RANGE', 'reading a missing piece')
  t.equal(await code(a.readBlock(5, 1200, 100)), 'INVALID_RANGE', 'a block past the short last piece')
  t.equal(await code(a.readBlock(6, 0, 1)), 'INVALID_RANGE', 'a piece past the end')
  t.equal(await code(a.readBlock(2, -1, 1)), 'INVALID_RANGE', 'a negative offset')
  t.equal(await code(a.writePiece(1, Buffer.alloc(10))), 'SIZE_MISMATCH', 'a piece of the wrong size')
  t.same(await cacheFiles(store), [], 'nothing in the cache while downloading')
  await a.close()

  const b = await store.openDownload(digest, layout)
  t.not(a, b, 'a new object after the last close')
  t.ok(b.hasPiece(5) && b.hasPiece(2), 'resumed from the persisted bitfield')
  t.equal(b.missingCount(), 4)
  t.ok((await b.readBlock(2, 0, pieceLength)).equals(piece(2)), 'resumed data is intact')
  const again = await store.openDownload(digest, layout)
  t.equal(again, b, 'opening an open download shares it')
  await again.close()
  t.equal(await code(b.finish(digest)), 'TORRENT_ERROR', 'finish refuses while pieces are missing')
  for (const i of [4, 0, 3, 1]) await b.writePiece(i, piece(i))
  t.equal(b.missingCount(), 0)
  t.same(await b.finish(digest), { size: data.length })
  t.same(await cacheFiles(store), [`${digest.hex.slice(0, 2)}/${digest.hex}`], 'in the cache after finish')
  t.same(await readdir(join(store.root, 'downloads')), [], 'download and bitfield removed')
  t.ok(
    (await b.readBlock(3, 0, 100)).equals(piece(3).subarray(0, 100)),
    'still readable for seeding after finish',
  )
  await b.close()
  t.ok((await readAll(store.createReadStream(digest))).equals(data))
})

t.test('PieceFile: a layout change or a missing data file starts over; bad data is discarded', async (t) => {
  const store = await tempStore(t, { bitfieldFlushMs: 5 })
  const pieceLength = 16 << 10
  const data = random(pieceLength * 3, 9)
  const digest = Digest.fromBuffer(data)
  const layout = { length: data.length, pieceLength, pieceCount: 3 }
  const a = await store.openDownload(digest, layout)
  await a.writePiece(0, data.subarray(0, pieceLength))
  await a.close()
  const bitfield = join(store.root, 'downloads', `${digest.hex}.bitfield`)
  t.ok(existsSync(bitfield), 'bitfield persisted')

  const other = await store.openDownload(digest, {
    length: data.length,
    pieceLength: pieceLength * 2,
    pieceCount: 2,
  })
  t.equal(other.missingCount(), 2, 'another layout starts over')
  await other.close()

  const c = await store.openDownload(digest, layout)
  t.equal(c.missingCount(), 3, 'and the old bitfield is gone')
  await c.writePiece(1, data.subarray(pieceLength, 2 * pieceLength))
  await c.flush()
  await c.close()
  await rm(join(store.root, 'downloads', digest.hex))
  const d = await store.openDownload(digest, layout)
  t.equal(d.missingCount(), 3, 'a missing data file starts over')
  t.equal(
    (await stat(join(store.root, 'downloads', digest.hex))).size,
    data.length,
    'preallocated to the full size',
  )

  // Pieces that pass SHA-1 per piece but make a different blob (wrong metainfo) fail the sha256.
  for (let i = 0; i < 3; i++) await d.writePiece(i, Buffer.alloc(pieceLength, i))
  t.equal(await code(d.finish(digest)), 'DIGEST_MISMATCH')
  t.equal(await store.stat(digest), undefined, 'nothing in the cache')
  t.same(await readdir(join(store.root, 'downloads')), [], 'the download was discarded')
  t.equal(await code(d.readBlock(0, 0, 1)), 'IO_ERROR', 'a discarded download is closed')
  t.equal(
    await code(store.openDownload(digest, { length: 10, pieceLength: 3, pieceCount: 2 })),
    'BAD_METAINFO',
    'inconsistent layouts are refused',
  )
  const json = await readFile(bitfield).catch(() => undefined)
  t.equal(json, undefined)
})

t.test('openSeed: a read-only view of a cached blob', async (t) => {
  const store = await tempStore(t, { seedIdleMs: 10 })
  const pieceLength = 16 << 10
  const data = random(pieceLength * 2 + 5, 11)
  const digest = Digest.fromBuffer(data)
  await store.putStream(digest, Readable.from([data]))
  const layout = { length: data.length, pieceLength, pieceCount: 3 }
  const seed = await store.openSeed(digest, layout)
  t.equal(seed.pieceCount, 3)
  t.ok(seed.hasPiece(0) && seed.hasPiece(2) && !seed.hasPiece(3))
  t.ok((await seed.readBlock(2, 0, 5)).equals(data.subarray(2 * pieceLength)), 'the short last piece')
  t.equal(await code(seed.readBlock(2, 0, 6)), 'INVALID_RANGE', 'past the end')
  await new Promise((r) => setTimeout(r, 30))
  t.ok(
    (await seed.readBlock(1, 10, 10)).equals(data.subarray(pieceLength + 10, pieceLength + 20)),
    'reopens after idling',
  )
  t.equal(await code(seed.writePiece(0, Buffer.alloc(pieceLength))), 'BAD_REQUEST', 'read-only')
  await seed.close()
  t.equal(await code(seed.readBlock(0, 0, 1)), 'IO_ERROR', 'closed')

  // A read still running when the seed is closed leaves no idle timer behind.
  const racing = await store.openSeed(digest, layout)
  const read = racing.readBlock(0, 0, 100)
  await racing.close()
  await read.catch(() => undefined)
  t.equal((racing as unknown as { idleTimer?: unknown }).idleTimer, undefined, 'no timer after close')
  t.equal(
    await code(store.openSeed(digest, { ...layout, length: data.length + 1 })),
    'BAD_METAINFO',
    'size must match',
  )
  t.equal(await code(store.openSeed(Digest.fromBuffer(Buffer.from('no')), layout)), 'BLOB_NOT_FOUND')
})

t.test('commit: an aborted commit stores nothing and keeps the upload', async (t) => {
  const store = await tempStore(t)
  const data = random(3 << 20, 12)
  const digest = Digest.fromBuffer(data)
  const uid = await store.createUpload()
  await store.appendUpload(uid, 0, Readable.from([data]), data.length)
  const controller = new AbortController()
  controller.abort()
  t.equal(await code(store.commitUpload(uid, digest, controller.signal)), 'ABORTED')
  t.equal(await store.stat(digest), undefined, 'not in the cache')
  t.equal(await store.uploadOffset(uid), data.length, 'the upload is intact')
  t.same(await store.commitUpload(uid, digest), { size: data.length }, 'and commits later')
})

t.test('a full disk or quota is INSUFFICIENT_STORAGE naming the path and the space left', async (t) => {
  const store = await tempStore(t)
  const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), {
    code: 'ENOSPC',
    syscall: 'write',
  })
  const path = join(store.root, 'downloads', 'gone-already')
  const e = ioError(enospc, 'cannot write piece 3', path)
  t.equal(e.code, 'INSUFFICIENT_STORAGE')
  t.equal(e.status, 507)
  t.match(
    e.message,
    new RegExp(
      `^cannot write piece 3: the disk is full at ${path} \\(ENOSPC\\): \\d.* free there; free space`,
    ),
    'the path, and the free space of its file system (found from the nearest folder that exists)',
  )
  t.match(e.details, { path, freeBytes: Number })
  const quota = ioError(Object.assign(new Error('EDQUOT'), { code: 'EDQUOT', path }), 'cannot store x')
  t.match(quota.message, `the disk quota is exhausted at ${path} (EDQUOT)`, "the error's own path serves too")
  t.equal(ioError(Object.assign(new Error('EIO'), { code: 'EIO' }), 'read x').code, 'IO_ERROR')
})

t.test('partial downloads: listed, their bytes counted, discarded', async (t) => {
  const store = await tempStore(t, { bitfieldFlushMs: 10 })
  const data = random(3 * 16384 + 5)
  const digest = Digest.fromBuffer(data)
  const layout = { length: data.length, pieceLength: 16384, pieceCount: 4 }
  const d = await store.openDownload(digest, layout)
  await d.writePiece(1, data.subarray(16384, 2 * 16384))
  await d.flush()
  t.same(
    (await store.listDownloads()).map((x) => x.hex),
    [digest.hex],
  )
  t.equal(await store.downloadBytes(digest), 16384, 'only the piece written occupies the disk (sparse file)')
  t.ok((await store.freeBytes()) > 0)
  t.equal(await store.discardDownload(digest), 16384, 'an open download is closed and deleted')
  t.ok(d.closed)
  t.same(await store.listDownloads(), [])
  t.same(await readdir(join(store.root, 'downloads')), [], 'data and bitfield are gone')
  t.equal(await store.discardDownload(digest), 0, 'discarding nothing is fine')
})
