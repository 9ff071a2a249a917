/** NAME → tag: full tags as is, file names against a (fake, paged) listing, narrowing, errors. */
import t from 'tap'
import { type Lister, resolveName } from '../../lib/cli/resolve-name.js'

/** A lister over `tags` (sorted), paged by `limit`, recording the calls. */
function fakeLister(
  tags: string[],
  calls: Array<{ prefix: string; after?: string; limit?: number }> = [],
): Lister {
  const sorted = [...tags].sort()
  return async (prefix, { after, limit }) => {
    calls.push({ prefix, after, limit })
    const from = sorted.filter((x) => x.startsWith(prefix) && (after === undefined || x > after))
    const page = from.slice(0, limit ?? 1000)
    return { tags: page, next: from.length > page.length ? page[page.length - 1] : undefined }
  }
}

const TAGS = [
  '10.0.0.7-/data/ref-prices.csv:latest',
  '10.0.0.7-/data/ref-prices.csv:2026-11-20',
  '10.0.0.7-/data/ref-prices.csv:2026-11-21',
  '10.0.0.8-/data/ref-prices.csv:latest',
  '10.0.0.8-/opt/ref-data/-prices.csv:v1',
  '10.0.0.7-/data/ref-other.csv:latest',
  '192.168.1.1-/usr/local/data-xxx交易数据.txt:latest',
  'not a tag at all',
]

t.test('a full tag is used as is, without listing', async (t) => {
  const calls: Array<{ prefix: string }> = []
  const tag = await resolveName('h-/d-f.txt:v1', { lister: fakeLister(TAGS, calls) })
  t.equal(tag.toString(), 'h-/d-f.txt:v1')
  t.equal((await resolveName('h-/d-f.txt')).toString(), 'h-/d-f.txt:latest', 'no lister needed')
  t.equal(
    (await resolveName('h-/d-f.txt', { version: 'v2' })).toString(),
    'h-/d-f.txt:v2',
    '--version applies',
  )
  t.equal(calls.length, 0)
})

t.test('a file name: narrowed by --src-host, --src-dir, --version; latest when not given', async (t) => {
  const lister = fakeLister(TAGS)
  t.equal(
    (await resolveName('prices.csv', { lister, srcHost: '10.0.0.7' })).toString(),
    '10.0.0.7-/data/ref-prices.csv:latest',
  )
  t.equal(
    (await resolveName('prices.csv', { lister, srcHost: '10.0.0.7', version: '2026-11-21' })).toString(),
    '10.0.0.7-/data/ref-prices.csv:2026-11-21',
  )
  t.equal(
    (await resolveName('prices.csv', { lister, srcHost: '10.0.0.8', srcDir: '/opt/ref-data/' })).toString(),
    '10.0.0.8-/opt/ref-data/-prices.csv:v1',
    'only version there: taken; srcDir with or without its trailing "/"',
  )
  t.equal(
    (await resolveName('xxx交易数据.txt', { lister })).toString(),
    '192.168.1.1-/usr/local/data-xxx交易数据.txt:latest',
    'non-ASCII names',
  )
})

t.test('the listing prefix narrows what is asked for', async (t) => {
  const calls: Array<{ prefix: string }> = []
  await resolveName('prices.csv', {
    lister: fakeLister(TAGS, calls),
    srcHost: '10.0.0.7',
    srcDir: '/data/ref',
  })
  t.same(
    calls.map((c) => c.prefix),
    ['10.0.0.7-/data/ref'],
  )
})

t.test('several matches: exit-2 usage error listing them (at most maxShown)', async (t) => {
  const lister = fakeLister(TAGS)
  await t.rejects(resolveName('prices.csv', { lister }), {
    code: 'USAGE',
    message:
      '2 tags match file name "prices.csv" among 8 listed tags: 10.0.0.7-/data/ref-prices.csv:latest, 10.0.0.8-/data/ref-prices.csv:latest; pass the full tag or narrow with --src-host, --src-dir, --version',
  })
  const many = Array.from({ length: 30 }, (_, i) => `h${String(i).padStart(2, '0')}-/d-f.txt:latest`)
  const err = await resolveName('f.txt', { lister: fakeLister(many) }).catch((e) => e)
  t.match(err, { code: 'USAGE', message: /^30 tags match .*h19-\/d-f\.txt:latest and 10 more; pass/ })
  t.notMatch(err.message, 'h20-')
  t.equal(err.details.candidates.length, 30)
})

t.test('no match: TAG_NOT_FOUND naming what was searched', async (t) => {
  await t.rejects(
    resolveName('prices.csv', { lister: fakeLister(TAGS), srcHost: '10.0.0.9', version: 'v7' }),
    {
      code: 'TAG_NOT_FOUND',
      message:
        'no tag matches file name "prices.csv" (--src-host 10.0.0.9, --version v7) among 0 listed tags',
    },
  )
  await t.rejects(resolveName('prices.csv', { lister: fakeLister(TAGS), version: 'v9' }), {
    code: 'TAG_NOT_FOUND',
  })
})

t.test('pages are followed; the scan is bounded', async (t) => {
  const tags = Array.from({ length: 2500 }, (_, i) => `h-/d${String(i).padStart(4, '0')}-f.txt:v1`)
  tags.push('h-/d9999-wanted.txt:v1')
  const calls: Array<{ prefix: string; after?: string }> = []
  const tag = await resolveName('wanted.txt', { lister: fakeLister(tags, calls), pageSize: 1000 })
  t.equal(tag.toString(), 'h-/d9999-wanted.txt:v1')
  t.equal(calls.length, 3, 'three pages')
  t.equal(calls[1]?.after, tags[999], 'next page after the last tag of the previous one')

  await t.rejects(resolveName('wanted.txt', { lister: fakeLister(tags), pageSize: 100, maxScan: 1000 }), {
    code: 'USAGE',
    message:
      /^looked through 1000 tags for "wanted\.txt" without reaching the end: narrow the search with --src-host/,
  })
})

t.test('without a lister a file name is a usage error; a path is refused', async (t) => {
  await t.rejects(resolveName('prices.csv'), { code: 'USAGE', message: /pass the full tag/ })
  await t.rejects(resolveName('a/b.csv', { lister: fakeLister(TAGS) }), {
    code: 'USAGE',
    message: /neither a tag .* nor a file name/,
  })
})
