import t from 'tap'
import { MemoryBackend } from '../../lib/backend/memory.js'
import {
  type BlobCheck,
  KeyedMutex,
  TAG_PREFIX,
  TagStore,
  tagObjectKey,
} from '../../lib/build-index/server/index.js'
import { Digest, Tag } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { createRegistry } from '../../lib/metrics/index.js'

const d = (n: number) => Digest.fromHex(n.toString(16).padStart(64, '0'))

/** A fake origin check: holds a set of digests, counts calls, can be slowed down. */
class FakeCheck implements BlobCheck {
  held = new Set<string>()
  calls = 0
  delayMs = 0
  async exists(_ns: string, digest: Digest): Promise<boolean> {
    this.calls++
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs))
    return this.held.has(digest.toString())
  }
}

function setup() {
  const backend = new MemoryBackend()
  const check = new FakeCheck()
  for (let i = 1; i <= 5; i++) check.held.add(d(i).toString())
  let clock = Date.parse('2026-01-01T00:00:00Z')
  const store = new TagStore({
    backend,
    blobCheck: check,
    logger: silentLogger(),
    registry: createRegistry('build-index-test'),
    now: () => {
      clock += 1000
      return new Date(clock)
    },
  })
  return { backend, check, store }
}

const ns = { ns: 'default' }

t.test('latest may move; createdAt stays, updatedAt moves', async (t) => {
  const { store } = setup()
  const tag = Tag.parse('h-/data-f.txt')
  t.ok(tag.isLatest)
  const a = await store.put(tag, d(1), ns)
  t.equal(a.result, 'created')
  const b = await store.put(tag, d(2), ns)
  t.equal(b.result, 'moved')
  t.equal(b.previous, d(1).toString())
  const rec = await store.get(tag)
  t.equal(rec.digest, d(2).toString())
  t.equal(rec.createdAt, a.record.createdAt)
  t.not(rec.updatedAt, a.record.updatedAt)
  t.equal(rec.tag, 'h-/data-f.txt:latest', 'the canonical tag is stored')
})

t.test('versioned tags are immutable; the same digest again is a success', async (t) => {
  const { store, check } = setup()
  const tag = Tag.parse('h-/data-f.txt:v1')
  t.equal((await store.put(tag, d(1), ns)).result, 'created')
  const callsBefore = check.calls
  const again = await store.put(tag, d(1), ns)
  t.equal(again.result, 'unchanged')
  t.equal(check.calls, callsBefore, 'no origin round trip for an unchanged tag')
  const err = await store.put(tag, d(2), ns).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(isShoalError(err, 'TAG_CONFLICT'), 'a different digest is a TAG_CONFLICT')
  t.match(
    (err as Error).message,
    `tag h-/data-f.txt:v1 already points at ${d(1)}; versions other than latest are immutable`,
  )
  t.equal((err as { status: number }).status, 409)
  t.equal((await store.get(tag)).digest, d(1).toString(), 'the conflict changed nothing')
})

t.test('a tag may only point at a blob the origins hold', async (t) => {
  const { store } = setup()
  const tag = Tag.parse('h-/data-f.txt:v1')
  await t.rejects(store.put(tag, d(99), ns), { code: 'BLOB_NOT_FOUND', message: /push the blob first/ })
  await t.rejects(store.get(tag), { code: 'TAG_NOT_FOUND', message: 'tag not found: h-/data-f.txt:v1' })
})

t.test('concurrent PUTs of a new versioned tag: exactly one wins', async (t) => {
  const { store, check } = setup()
  check.delayMs = 20 // widen the check-then-write window
  const tag = Tag.parse('h-/data-f.txt:v7')
  const results = await Promise.allSettled([
    store.put(tag, d(1), ns),
    store.put(tag, d(2), ns),
    store.put(tag, d(3), ns),
  ])
  const ok = results.filter((r) => r.status === 'fulfilled')
  const conflicts = results.filter((r) => r.status === 'rejected' && isShoalError(r.reason, 'TAG_CONFLICT'))
  t.equal(ok.length, 1, 'one PUT succeeds')
  t.equal(conflicts.length, 2, 'the others get TAG_CONFLICT')
  const winner = (ok[0] as PromiseFulfilledResult<{ record: { digest: string } }>).value.record.digest
  t.equal((await store.get(tag)).digest, winner)

  // Same digest from many callers at once: one creates, the rest see "unchanged".
  const same = await Promise.all([1, 2, 3, 4].map(() => store.put(Tag.parse('h-/data-g.txt:v1'), d(4), ns)))
  t.same(same.map((r) => r.result).sort(), ['created', 'unchanged', 'unchanged', 'unchanged'])
})

t.test('keyed mutex serialises per key, runs keys in parallel, and forgets drained keys', async (t) => {
  const m = new KeyedMutex()
  const order: string[] = []
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
  await Promise.all([
    m.run('a', async () => {
      order.push('a1+')
      await sleep(20)
      order.push('a1-')
    }),
    m.run('a', async () => {
      order.push('a2+')
      order.push('a2-')
    }),
    m.run('b', async () => {
      order.push('b+')
      order.push('b-')
    }),
  ])
  t.same(order, ['a1+', 'b+', 'b-', 'a1-', 'a2+', 'a2-'])
  await t.rejects(m.run('c', async () => Promise.reject(new Error('boom'))))
  t.equal(await m.run('c', async () => 1), 1, 'a failure releases the lock')
  t.equal(m.size, 0)
})

t.test('delete', async (t) => {
  const { store } = setup()
  const tag = Tag.parse('h-/data-f.txt:v1')
  await store.put(tag, d(1), ns)
  const gone = await store.delete(tag)
  t.equal(gone?.digest, d(1).toString())
  t.equal(await store.find(tag), undefined)
  await t.rejects(store.delete(tag), { code: 'TAG_NOT_FOUND' })
  const err = await store.put(tag, d(2), ns).catch((e: unknown) => e)
  t.match(err, { code: 'TAG_CONFLICT', details: { tombstone: true, digest: d(1).toString() } })
  t.match((err as Error).message, /tombstone.*purge/, 'the message names the tombstone and the purge')
  t.equal((await store.put(tag, d(1), ns)).result, 'created', 'the same digest restores it')
  await store.delete(tag, { purge: true })
  t.equal((await store.put(tag, d(2), ns)).result, 'created', 'after a purge the version is free')

  // latest leaves no tombstone: it may move anyway.
  const latest = Tag.parse('h-/data-f.txt')
  await store.put(latest, d(1), ns)
  await store.delete(latest)
  t.equal((await store.put(latest, d(3), ns)).result, 'created')

  // Purging an already deleted version removes just its tombstone.
  const v2 = Tag.parse('h-/data-f.txt:v2')
  await store.put(v2, d(4), ns)
  await store.delete(v2)
  t.equal(await store.delete(v2, { purge: true }), undefined)
  await t.rejects(store.delete(v2, { purge: true }), { code: 'TAG_NOT_FOUND' }, 'nothing left to purge')
  t.equal((await store.put(v2, d(5), ns)).result, 'created')
})

t.test('digest → tags: kept by put, move and delete; stale pairs dropped; pages', async (t) => {
  const { store, backend, check } = setup()
  await t.rejects(store.tagsOf(d(1), { limit: 10 }), { code: 'UNAVAILABLE' }, 'not before indexing')
  // A tag stored before the reverse index existed.
  const old = Tag.parse('h-/data-old.txt:v1')
  await store.put(old, d(1), ns)
  await backend.delete(`refs/sha256/${d(1).hex}/${tagObjectKey(old).slice('tags/'.length)}`)
  t.equal(await store.indexExisting(), 1, 'existing tags indexed once')
  t.equal(await store.indexExisting(), 0, 'and not again')
  t.same((await store.tagsOf(d(1), { limit: 10 })).tags, [old.toString()])

  const latest = Tag.parse('h-/data-f.txt')
  await store.put(latest, d(1), ns)
  const tags = [Tag.parse('h-/data-f.txt:v1'), Tag.parse('h-/data-f.txt:v2')]
  for (const tag of tags) await store.put(tag, d(1), ns)
  const first = await store.tagsOf(d(1), { limit: 2 })
  t.equal(first.tags.length, 2)
  t.ok(first.next)
  const rest = await store.tagsOf(d(1), { limit: 10, after: first.next })
  t.equal(first.tags.length + rest.tags.length, 4, 'pages cover every tag once')

  await store.put(latest, d(2), ns)
  t.notOk((await store.tagsOf(d(1), { limit: 10 })).tags.includes(latest.toString()), 'moved away')
  t.same((await store.tagsOf(d(2), { limit: 10 })).tags, [latest.toString()], 'moved here')
  await store.delete(tags[0] as Tag)
  await store.delete(tags[1] as Tag)
  await store.delete(old)
  t.same((await store.tagsOf(d(1), { limit: 10 })).tags, [], 'deleted tags no longer count')

  // A put whose blob is missing leaves no pair; a pair left by a crash is dropped when read.
  await t.rejects(store.put(Tag.parse('h-/x-y:v1'), d(9), ns), { code: 'BLOB_NOT_FOUND' })
  t.same((await backend.list(`refs/sha256/${d(9).hex}/`)).keys, [])
  await backend.put(`refs/sha256/${d(3).hex}/h-%2Fx-ghost%3Av1`, Buffer.alloc(0))
  t.same((await store.tagsOf(d(3), { limit: 10 })).tags, [], 'stale pair ignored')
  t.same((await backend.list(`refs/sha256/${d(3).hex}/`)).keys, [], 'and removed')

  // A put in progress counts: the lookup waits for its lock.
  check.delayMs = 100
  const putting = store.put(Tag.parse('h-/x-z:v1'), d(4), ns)
  await new Promise((r) => setTimeout(r, 20))
  t.same((await store.tagsOf(d(4), { limit: 10 })).tags, ['h-/x-z:v1'])
  await putting
})

t.test('keys are encoded: never the raw tag, prefixes preserved', async (t) => {
  const { store, backend } = setup()
  const tag = Tag.parse('192.168.1.1-/usr/local/data-交易数据.txt:v1')
  await store.put(tag, d(1), ns)
  const key = tagObjectKey(tag)
  t.equal(key, 'tags/192.168.1.1-%2Fusr%2Flocal%2Fdata-交易数据.txt%3Av1')
  t.equal(key.split('/').length, 2, 'one segment under tags/')
  t.ok(await backend.stat(key))
  const stored = JSON.parse((await (await backend.get(key)).toArray()).join(''))
  t.same(Object.keys(stored).sort(), ['createdAt', 'digest', 'ns', 'tag', 'updatedAt'])
  t.equal(stored.tag, tag.toString())

  // A valid tag full of characters that encode to %XX grows up to 3x: rejected with a clear
  // message rather than the backend's key-length error.
  const deep = Tag.from({
    srcHost: 'h',
    srcDir: `/${Array(100).fill('a').join('/')}`,
    fileName: '('.repeat(250),
  })
  t.throws(() => tagObjectKey(deep), { code: 'INVALID_TAG', message: /once encoded for storage/ })
})

t.test('list: prefixes, pagination, after token', async (t) => {
  const { store } = setup()
  const names = [
    'h1-/data-a.txt:v1',
    'h1-/data-a.txt:v2',
    'h1-/data-b.txt:v1',
    'h1-/other-c.txt:v1',
    'h2-/data-a.txt:v1',
    'h1-/data-交易.txt:v1',
  ]
  for (const n of names) await store.put(Tag.parse(n), d(1), ns)

  const all = await store.list('', { limit: 100 })
  t.equal(all.tags.length, names.length)
  t.equal(all.next, undefined)

  const h1data = await store.list('h1-/data-', { limit: 100 })
  t.same(
    h1data.tags.sort(),
    ['h1-/data-a.txt:v1', 'h1-/data-a.txt:v2', 'h1-/data-b.txt:v1', 'h1-/data-交易.txt:v1'].sort(),
  )
  t.same((await store.list('h1-/data-a.txt:', { limit: 100 })).tags, [
    'h1-/data-a.txt:v1',
    'h1-/data-a.txt:v2',
  ])
  t.same((await store.list('nothing', { limit: 100 })).tags, [])

  const seen: string[] = []
  let after: string | undefined
  let pages = 0
  do {
    const page = await store.list('h1-', { limit: 2, after })
    t.ok(page.tags.length <= 2)
    seen.push(...page.tags)
    after = page.next
    if (after !== undefined)
      t.equal(after, page.tags[page.tags.length - 1], 'next is the last tag of the page')
    pages++
  } while (after !== undefined)
  t.equal(pages, 3)
  t.same(seen.sort(), names.filter((n) => n.startsWith('h1-')).sort())
  t.equal(new Set(seen).size, seen.length, 'no tag twice across pages')

  // Objects outside tags/ are never listed.
  t.ok(TAG_PREFIX.endsWith('/'))
  await t.rejects(store.list('x'.repeat(600), { limit: 1 }), { code: 'BAD_REQUEST' })
})

t.test('a corrupt tag object is reported, not served', async (t) => {
  const { store, backend } = setup()
  const tag = Tag.parse('h-/data-f.txt:v1')
  await backend.put(tagObjectKey(tag), Buffer.from('{not json'))
  await t.rejects(store.get(tag), { code: 'BACKEND_ERROR', message: /not valid JSON/ })
  await backend.put(
    tagObjectKey(tag),
    Buffer.from(JSON.stringify({ tag: 'x', digest: 'nope', createdAt: '', updatedAt: '' })),
  )
  await t.rejects(store.get(tag), { code: 'BACKEND_ERROR', message: /not a valid tag record/ })
})
