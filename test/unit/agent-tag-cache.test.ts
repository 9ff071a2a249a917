/**
 * The agent's tag cache (lib/agent/server/tag-cache.ts) on a real folder: what it keeps (never
 * `latest`), the cap (least recently resolved dropped, across a restart too), corrupt or
 * foreign entries ignored and removed, and file names that no tag can steer out of the folder.
 * Also the tag meta rules (lib/core/tag-meta.ts) the cache and the daemons share.
 */
import { readdir, readFile, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { TagCache, tagCacheFileName } from '../../lib/agent/server/tag-cache.js'
import { Digest, parseTagMeta, parseTagMetaBody, Tag } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { tempDir } from '../helpers/files.js'

const d = (n: number) => Digest.fromBuffer(Buffer.from(`blob ${n}`))
const tag = (name: string, version: string) => Tag.parse(`h-/data-${name}:${version}`)

async function open(dir: string, maxEntries: number): Promise<TagCache> {
  const cache = new TagCache(dir, { maxEntries, logger: silentLogger() })
  await cache.init()
  return cache
}

t.test('remembers immutable versions with their meta, never latest; forget drops one', async (t) => {
  const dir = join(await tempDir(t), 'tags')
  const cache = await open(dir, 10)
  await cache.remember(tag('a', 'v1'), { digest: d(1), type: 'directory', desc: 'daily ref data' })
  await cache.remember(tag('a', 'latest'), { digest: d(2) })
  const hit = await cache.get(tag('a', 'v1'))
  t.ok(hit?.digest.equals(d(1)), 'v1 is answered')
  t.equal(hit?.type, 'directory')
  t.equal(hit?.desc, 'daily ref data')
  t.equal(await cache.get(tag('a', 'latest')), undefined, 'latest is never kept')
  t.equal(cache.size, 1)
  t.equal((await readdir(dir)).length, 1, 'one file')

  const reopened = await open(dir, 10)
  t.ok((await reopened.get(tag('a', 'v1')))?.digest.equals(d(1)), 'persisted across a restart')
  await reopened.forget(tag('a', 'v1'))
  t.equal(await reopened.get(tag('a', 'v1')), undefined, 'forgotten')
  t.same(await readdir(dir), [], 'and its file removed')
})

t.test('capped: the least recently resolved go first, and the order survives a restart', async (t) => {
  const dir = join(await tempDir(t), 'tags')
  let now = 1_700_000_000_000
  const cache = new TagCache(dir, { maxEntries: 3, logger: silentLogger(), now: () => now })
  await cache.init()
  for (const v of ['v1', 'v2', 'v3']) {
    now += 1000
    await cache.remember(tag('a', v), { digest: d(Number(v.slice(1))) })
  }
  now += 1000
  await cache.remember(tag('a', 'v1'), { digest: d(1) }) // resolved again: the most recent now
  now += 1000
  await cache.remember(tag('a', 'v4'), { digest: d(4) })
  t.equal(cache.size, 3)
  t.equal(await cache.get(tag('a', 'v2')), undefined, 'v2 (least recently resolved) was dropped')
  for (const v of ['v1', 'v3', 'v4']) t.ok(await cache.get(tag('a', v)), `${v} kept`)
  t.equal((await readdir(dir)).length, 3, 'three files on disk')

  // The ages come back from the files' mtimes; a smaller cap trims the oldest at start.
  const small = await open(dir, 2)
  t.equal(small.size, 2)
  t.equal(await small.get(tag('a', 'v3')), undefined, 'v3 (the oldest left) goes first')
  t.ok(await small.get(tag('a', 'v1')))
  t.ok(await small.get(tag('a', 'v4')))

  const off = await open(join(dir, '..', 'off'), 0)
  await off.remember(tag('a', 'v1'), { digest: d(1) })
  t.equal(off.size, 0, 'maxEntries 0 keeps nothing')
})

t.test('a corrupt, foreign or oversized entry is ignored and removed; temp files are cleaned', async (t) => {
  const dir = join(await tempDir(t), 'tags')
  const cache = await open(dir, 10)
  const v1 = tag('a', 'v1')
  const v2 = tag('a', 'v2')
  const v3 = tag('a', 'v3')
  for (const [i, x] of [v1, v2, v3].entries()) await cache.remember(x, { digest: d(i) })
  await writeFile(join(dir, tagCacheFileName(v1)), '{"v":1,"tag":') // torn
  // v1's record copied under v2's name: never answered for v2.
  const other = await readFile(join(dir, tagCacheFileName(v3)))
  await writeFile(join(dir, tagCacheFileName(v2)), other)
  await writeFile(join(dir, 'tmp-123-abc'), 'half a write')
  await writeFile(join(dir, 'notes.txt'), 'not ours')

  t.equal(await cache.get(v1), undefined, 'torn JSON: unknown')
  t.equal(await cache.get(v2), undefined, "another tag's record: unknown")
  t.ok(await cache.get(v3), 'the good one still answers')
  const left = await readdir(dir)
  t.notOk(left.includes(tagCacheFileName(v1)), 'the torn file was removed')
  t.notOk(left.includes(tagCacheFileName(v2)), 'the foreign file was removed')

  await writeFile(join(dir, tagCacheFileName(v1)), Buffer.alloc(64 << 10, 0x20))
  const reopened = await open(dir, 10)
  t.equal(await reopened.get(v1), undefined, 'an oversized file: unknown')
  const after = await readdir(dir)
  t.notOk(after.includes('tmp-123-abc'), 'a temp file a crash left is removed at start')
  t.ok(after.includes('notes.txt'), 'files that are not ours are left alone')
  await reopened.remember(v1, { digest: d(9) })
  t.ok((await reopened.get(v1))?.digest.equals(d(9)), 'a removed entry is written anew on the next resolve')
})

t.test('file names are hashes: no tag reaches outside the folder', async (t) => {
  const root = await tempDir(t)
  const dir = join(root, 'tags')
  const cache = await open(dir, 10)
  const tricky = [
    Tag.parse('h-/etc-passwd:v1'),
    Tag.parse('..-/x/..y-z:v2'),
    Tag.parse('h-/a/b-..%2F..:v4'),
    Tag.parse('192.168.1.1-/usr/local/data-xxx交易数据.txt:v3'),
  ]
  for (const [i, x] of tricky.entries()) {
    t.match(tagCacheFileName(x), /^[0-9a-f]{64}\.json$/)
    await cache.remember(x, { digest: d(i) })
    t.ok((await cache.get(x))?.digest.equals(d(i)), `${x} round-trips`)
  }
  t.same((await readdir(root)).sort(), ['tags'], 'nothing was written beside the folder')
  t.equal((await readdir(dir)).length, 4)
  // An entry's age is its mtime: a future mtime does not break the order (it is just newest).
  await utimes(join(dir, tagCacheFileName(tricky[0] as Tag)), new Date(4e12), new Date(4e12))
  t.equal((await open(dir, 10)).size, 4)
})

t.test('tag meta: what is accepted and the messages for what is not', async (t) => {
  t.same(parseTagMeta(undefined), {})
  t.same(parseTagMeta({ type: 'file', desc: 'x' }), { type: 'file', desc: 'x' })
  t.same(parseTagMeta({ desc: '' }), {}, 'an empty desc is no desc')
  t.same(parseTagMetaBody(Buffer.from('  ')), {}, 'an empty body is no meta')
  t.same(parseTagMeta({ desc: '交易数据 é'.repeat(10) }).desc, '交易数据 é'.repeat(10), 'UTF-8 welcome')
  const refused: Array<[unknown, RegExp]> = [
    [{ type: 'dir' }, /type must be "file" or "directory", not "dir"/],
    [{ type: 3 }, /type must be/],
    [{ desc: 'x'.repeat(1025) }, /desc is 1025 bytes \(UTF-8\); the limit is 1024/],
    [{ desc: 'é'.repeat(513) }, /desc is 1026 bytes/],
    [{ desc: 'two\nlines' }, /control character U\+000A/],
    [{ desc: '\ud800' }, /not valid Unicode/],
    [{ descr: 'typo' }, /unknown field "descr"/],
    [[1], /expected a JSON object/],
    ['file', /expected a JSON object/],
  ]
  for (const [value, message] of refused) {
    t.throws(() => parseTagMeta(value), { code: 'BAD_REQUEST', message }, JSON.stringify(value))
  }
  try {
    parseTagMetaBody(Buffer.from('type=file'))
    t.fail('not JSON must be refused')
  } catch (err) {
    t.ok(isShoalError(err, 'BAD_REQUEST'))
    t.match((err as Error).message, /not valid JSON/)
  }
})
