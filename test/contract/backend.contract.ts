/**
 * The contract every Backend implementation must pass (fs, memory, s3). Run it from a
 * *.test.ts file: `backendContract(t, 'fs', async () => ({ backend, cleanup }))`.
 */
import { createCipheriv, createHash } from 'node:crypto'
import { PassThrough, Readable } from 'node:stream'
import type { Test } from 'tap'
import type { Backend } from '../../lib/backend/types.js'
import { isShoalError } from '../../lib/errors/index.js'

export interface BackendFixture {
  backend: Backend
  cleanup(): Promise<void>
}

/**
 * What a test server (not the backend) cannot do; real S3 has none of these limits. s3rver
 * keeps each object in a file named after its key, so it lists by directory walk (not byte
 * order once one key is a folder of others), cannot hold a key segment over 255 bytes, and
 * overwrites a file in place under a reader.
 */
export interface ServerLimits {
  /** Lists keys such as `a`, `a!` and `a/b` in byte order. */
  nestedKeyOrder?: boolean
  /** Holds key segments longer than 255 bytes. */
  longSegments?: boolean
  /** A read started before an overwrite finishes with one whole version. */
  readDuringOverwrite?: boolean
}

const LARGE_BYTES = 64 << 20

/**
 * `bytes` of reproducible pseudo-random data, 1 MiB at a time: AES-128-CTR over zeros is
 * seeded, fast (hardware AES) and never repeats, so a part misplaced by a multipart upload shows.
 */
function* seeded(seed: number, bytes: number): Generator<Buffer> {
  const key = createHash('sha256').update(`shoal-contract-${seed}`).digest().subarray(0, 16)
  const aes = createCipheriv('aes-128-ctr', key, Buffer.alloc(16))
  const zeros = Buffer.alloc(1 << 20)
  for (let left = bytes; left > 0; left -= zeros.length) {
    yield aes.update(left >= zeros.length ? zeros : zeros.subarray(0, left))
  }
}

async function sha256Of(stream: Readable): Promise<{ hex: string; size: number }> {
  const h = createHash('sha256')
  let size = 0
  for await (const c of stream) {
    h.update(c as Buffer)
    size += (c as Buffer).length
  }
  return { hex: h.digest('hex'), size }
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer))
  return Buffer.concat(chunks)
}

async function getText(b: Backend, key: string, opts?: { start?: number; end?: number }): Promise<string> {
  return (await readAll(await b.get(key, opts))).toString('utf8')
}

async function listAll(b: Backend, prefix: string, limit: number): Promise<string[]> {
  const out: string[] = []
  let after: string | undefined
  for (let pages = 0; pages < 1000; pages++) {
    const page = await b.list(prefix, { after, limit })
    if (page.keys.length > limit) throw new Error(`page of ${page.keys.length} keys exceeds limit ${limit}`)
    out.push(...page.keys)
    if (page.next === undefined) return out
    after = page.next
  }
  throw new Error('pagination does not end')
}

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b))

async function rejectsCode(
  t: Test,
  p: Promise<unknown> | (() => Promise<unknown>),
  code: string,
  msg: string,
) {
  try {
    await (typeof p === 'function' ? p() : p)
    t.fail(`${msg}: expected ${code}, resolved`)
  } catch (err) {
    t.ok(isShoalError(err), `${msg}: a ShoalError`)
    t.equal((err as { code?: string }).code, code, msg)
  }
}

export function backendContract(
  t: Test,
  name: string,
  make: () => Promise<BackendFixture>,
  limits: ServerLimits = {},
): void {
  const { nestedKeyOrder = true, longSegments = true, readDuringOverwrite = true } = limits
  /** A listing as the test compares it: as returned, or sorted where the server cannot order it. */
  const ordered = (keys: string[]) => (nestedKeyOrder ? keys : [...keys].sort(byteOrder))
  const withBackend = (title: string, fn: (t: Test, b: Backend) => Promise<void>) =>
    t.test(`${name}: ${title}`, async (t) => {
      const fx = await make()
      t.teardown(() => fx.cleanup())
      await fn(t, fx.backend)
    })

  withBackend('put / stat / get / delete round trip', async (t, b) => {
    t.equal(await b.stat('blobs/x'), undefined, 'absent before put')
    await b.put('blobs/x', Buffer.from('hello world'))
    t.same(await b.stat('blobs/x'), { size: 11 })
    t.equal(await getText(b, 'blobs/x'), 'hello world')
    await b.put('blobs/s', Readable.from([Buffer.from('ab'), Buffer.from('cd')]), { size: 4 })
    t.equal(await getText(b, 'blobs/s'), 'abcd', 'a stream body with its size')
    await b.put('blobs/empty', Buffer.alloc(0))
    t.same(await b.stat('blobs/empty'), { size: 0 })
    t.equal(await getText(b, 'blobs/empty'), '', 'an empty object reads back empty')
    await rejectsCode(
      t,
      b.put('blobs/bad', Readable.from([Buffer.from('abc')]), { size: 5 }),
      'SIZE_MISMATCH',
      'announced size differs',
    )
    t.equal(await b.stat('blobs/bad'), undefined, 'a failed put leaves nothing')
    await b.delete('blobs/x')
    t.equal(await b.stat('blobs/x'), undefined, 'gone after delete')
    t.same((await b.list('blobs/')).keys, ['blobs/empty', 'blobs/s'])
  })

  withBackend('absent objects', async (t, b) => {
    await rejectsCode(t, b.get('nope/x'), 'BLOB_NOT_FOUND', 'get of an absent key')
    t.equal(await b.stat('nope/x'), undefined)
    await t.resolves(async () => {
      await b.delete('nope/x')
      await b.delete('nope/x')
    }, 'deleting an absent key twice is fine')
    t.same(await b.list('nope/'), { keys: [] })
  })

  withBackend('overwrite is atomic', async (t, b) => {
    const size = 1 << 20
    await b.put('obj', Buffer.alloc(size, 'a'))
    // A put in progress is invisible: readers keep seeing the whole old object.
    const body = new PassThrough()
    const putting = b.put('obj', body, { size })
    body.write(Buffer.alloc(size / 2, 'b'))
    await new Promise((r) => setTimeout(r, 20))
    const during = await readAll(await b.get('obj'))
    t.equal(during.length, size, 'old size while the new object is half written')
    t.ok(
      during.every((c) => c === 0x61),
      'old bytes while the new object is half written',
    )
    // A reader that started before the overwrite finishes never sees a mix.
    const reader = readDuringOverwrite ? await b.get('obj') : undefined
    body.end(Buffer.alloc(size / 2, 'b'))
    await putting
    if (reader) {
      const old = await readAll(reader)
      t.ok(
        old.length === size && (old.every((c) => c === 0x61) || old.every((c) => c === 0x62)),
        'an earlier reader sees one version',
      )
    }
    const after = await readAll(await b.get('obj'))
    t.ok(after.length === size && after.every((c) => c === 0x62), 'new bytes after the put')
  })

  withBackend('ranges', async (t, b) => {
    await b.put('r', Buffer.from('0123456789'))
    t.equal(await getText(b, 'r', { start: 2, end: 5 }), '2345', 'inclusive range')
    t.equal(await getText(b, 'r', { start: 7 }), '789', 'open-ended range')
    t.equal(await getText(b, 'r', { start: 8, end: 100 }), '89', 'end past the end is clamped')
    t.equal(await getText(b, 'r', { start: 0, end: 0 }), '0', 'one byte')
    t.equal(await getText(b, 'r', { end: 1 }), '01', 'start defaults to 0')
    await rejectsCode(t, b.get('r', { start: 10 }), 'INVALID_RANGE', 'start at the end')
    await rejectsCode(t, b.get('r', { start: 5, end: 4 }), 'INVALID_RANGE', 'end before start')
    await rejectsCode(t, b.get('r', { start: -1, end: 3 }), 'INVALID_RANGE', 'negative start')
    t.equal(await getText(b, 'r', { start: 9, end: 9 }), '9', 'the last byte')
    t.equal(await getText(b, 'r', { start: 9 }), '9', 'from the last byte on')
    t.equal(await getText(b, 'r', { start: 4, end: 6 }), '456', 'the middle')
    await rejectsCode(t, b.get('r', { start: 11, end: 20 }), 'INVALID_RANGE', 'a range past the end')
    await rejectsCode(t, b.get('absent', { start: 0, end: 3 }), 'BLOB_NOT_FOUND', 'a range of an absent key')
  })

  withBackend('a 64 MiB object streams in and out (sha256), with ranges across it', async (t, b) => {
    const inHash = createHash('sha256')
    const body = Readable.from(
      (function* () {
        for (const c of seeded(1, LARGE_BYTES)) {
          inHash.update(c)
          yield c
        }
      })(),
    )
    const started = Date.now()
    await b.put('large/obj', body, { size: LARGE_BYTES })
    const putMs = Date.now() - started
    t.same(await b.stat('large/obj'), { size: LARGE_BYTES })
    const out = await sha256Of(await b.get('large/obj'))
    t.same(out, { hex: inHash.digest('hex'), size: LARGE_BYTES }, 'the bytes read back hash the same')
    t.comment(`64 MiB: put ${putMs} ms, put + get ${Date.now() - started} ms`)
    // Ranges against the same generated bytes: the first, the last, one across 8 MiB (a part
    // boundary for the S3 backend's default part size) and the last 1 MiB.
    const expect = (start: number, end: number) => {
      const parts: Buffer[] = []
      let off = 0
      for (const c of seeded(1, end + 1)) {
        if (off + c.length > start) parts.push(c.subarray(Math.max(0, start - off)))
        off += c.length
      }
      return Buffer.concat(parts)
    }
    const check = async (start: number, end: number, what: string) =>
      t.ok((await readAll(await b.get('large/obj', { start, end }))).equals(expect(start, end)), what)
    await check(0, 0, 'the first byte')
    await check(LARGE_BYTES - 1, LARGE_BYTES - 1, 'the last byte')
    await check((8 << 20) - 100, (8 << 20) + 100, 'across a part boundary')
    await check(LARGE_BYTES - (1 << 20), LARGE_BYTES - 1, 'the last MiB')
    await b.delete('large/obj')
  })

  withBackend('list: past one page', async (t, b) => {
    const keys = Array.from({ length: 25 }, (_, i) => `many/k${String(i).padStart(3, '0')}`)
    await Promise.all(keys.map((k) => b.put(k, Buffer.from(k))))
    await b.put('manz', Buffer.from('not under many/'))
    const first = await b.list('many/', { limit: 10 })
    t.same(first.keys, keys.slice(0, 10), 'the first page holds the first `limit` keys')
    t.equal(first.next, keys[9], 'and says where the next begins')
    t.same(await listAll(b, 'many/', 10), keys, 'three pages of 10 concatenate to all keys, in order')
    t.same(await listAll(b, 'many/', 7), keys, 'pages of 7 too')
    t.same(await listAll(b, 'many/', 25), keys, 'exactly one full page')
  })

  withBackend('list: prefix, byte order, pagination', async (t, b) => {
    const keys = [
      'tags/a',
      'tags/a/b',
      'tags/a!',
      'tags/ab',
      'tags/abc/d',
      'tags/B',
      'tags/z',
      'tags/é',
      'tags/\uff61',
      'tags/😀',
      'tags/~x',
      'blobs/sha256/00/aa',
      'other',
    ]
    for (const k of keys) await b.put(k, Buffer.from(k))
    const tags = keys.filter((k) => k.startsWith('tags/')).sort(byteOrder)
    t.same(ordered((await b.list('tags/')).keys), tags, 'one page, ascending byte order (not UTF-16 order)')
    if (!nestedKeyOrder) {
      t.same(ordered((await b.list('')).keys), [...keys].sort(byteOrder), 'the empty prefix lists everything')
      return // pages and `after` rely on the order
    }
    t.same(await listAll(b, 'tags/', 2), tags, 'pages of 2 concatenate to the same list')
    t.same(await listAll(b, 'tags/', 1), tags, 'pages of 1 too')
    t.same(
      (await b.list('tags/a')).keys,
      ['tags/a', 'tags/a!', 'tags/a/b', 'tags/ab', 'tags/abc/d'],
      'a prefix that ends mid-segment',
    )
    t.same((await b.list('tags/a/')).keys, ['tags/a/b'], 'a prefix naming a folder')
    t.same((await b.list('tags/ab', { after: 'tags/ab' })).keys, ['tags/abc/d'], 'after excludes itself')
    t.same(
      (await b.list('tags/', { after: 'tags/a/b', limit: 2 })).keys,
      ['tags/ab', 'tags/abc/d'],
      'after a key that exists',
    )
    t.same(
      (await b.list('tags/', { after: 'tags/aa' })).keys[0],
      'tags/ab',
      'after a key that does not exist',
    )
    t.same((await b.list('zzz')).keys, [], 'nothing under an unknown prefix')
    t.same((await b.list('')).keys, [...keys].sort(byteOrder), 'the empty prefix lists everything')
    const last = await b.list('tags/', { limit: tags.length })
    t.equal(last.next, undefined, 'no next when the page holds the rest')
  })

  withBackend('keys: UTF-8, %, dots, long segments, prefixes of other keys', async (t, b) => {
    const long = '交易数据'.repeat(80) // 960 bytes in one segment
    const keys = [
      'tags/192.168.1.1-%2Fusr%2Flocal-xxx交易数据.txt:v1',
      'tags/%',
      'tags/%25',
      'tags/a%2Fb',
      'tags/ +~!*()\'"<>|?\\:',
      'tags/...',
      'tags/.hidden',
      'tags/x..',
      `tags/${long}`,
      `tags/${long}/child`,
      `tags/${'x'.repeat(200)}..`,
      `tags/${'x'.repeat(200)}../y`,
      `tags/${'y'.repeat(199)}é`,
      `tags/${'y'.repeat(199)}éz`,
      `tags/${'y'.repeat(199)}`,
      'p/a',
      'p/a/b',
      'p/a/b/c',
      'p/ab',
    ].filter((k) => longSegments || k.split('/').every((seg) => Buffer.byteLength(seg) < 200))
    for (const k of keys) await b.put(k, Buffer.from(`v:${k}`))
    for (const k of keys) {
      t.equal(await getText(b, k), `v:${k}`, `round trip of ${k.slice(0, 40)}`)
      t.same(await b.stat(k), { size: Buffer.byteLength(`v:${k}`) })
    }
    t.same(
      nestedKeyOrder ? await listAll(b, '', 3) : ordered((await b.list('')).keys),
      [...keys].sort(byteOrder),
      'all keys listed back exactly',
    )
    if (longSegments) {
      t.same(
        (await b.list(`tags/${long.slice(0, 100)}`)).keys,
        [`tags/${long}`, `tags/${long}/child`],
        'prefix inside a long segment',
      )
    }
    await b.delete('p/a')
    t.same(
      ordered((await b.list('p/')).keys),
      ['p/a/b', 'p/a/b/c', 'p/ab'],
      'deleting a key keeps keys it is a prefix of',
    )
    await b.delete('p/a/b/c')
    await b.delete('p/a/b')
    t.same((await b.list('p/')).keys, ['p/ab'])
    await b.put('p/a/b/c', Buffer.from('again'))
    t.equal(await getText(b, 'p/a/b/c'), 'again', 'a key can be put again after its folders were cleaned up')
  })

  withBackend('bad keys are rejected', async (t, b) => {
    const bad = ['', '/a', 'a/', 'a//b', 'a/./b', 'a/../b', '..', '.', 'a\u0000b', 'a\nb', 'x'.repeat(1025)]
    for (const k of bad) {
      const shown = JSON.stringify(k.slice(0, 20))
      await rejectsCode(t, () => b.put(k, Buffer.from('x')), 'BAD_REQUEST', `put ${shown}`)
      await rejectsCode(t, () => b.get(k), 'BAD_REQUEST', `get ${shown}`)
      await rejectsCode(t, () => b.stat(k), 'BAD_REQUEST', `stat ${shown}`)
      await rejectsCode(t, () => b.delete(k), 'BAD_REQUEST', `delete ${shown}`)
    }
    await rejectsCode(t, () => b.list('a\u0001'), 'BAD_REQUEST', 'a list prefix with control characters')
    t.same((await b.list('')).keys, [], 'nothing was stored')
  })
}
