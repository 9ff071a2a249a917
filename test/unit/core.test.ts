import t from 'tap'
import { Digest, Tag, tagFromKey, tagKey } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'

t.test('tag grammar: valid tags', async (t) => {
  const a = Tag.parse('192.168.1.1-/usr/local/data-xxx.txt:v1')
  t.equal(a.srcHost, '192.168.1.1')
  t.equal(a.srcDir, '/usr/local/data')
  t.equal(a.fileName, 'xxx.txt')
  t.equal(a.version, 'v1')
  t.equal(a.toString(), '192.168.1.1-/usr/local/data-xxx.txt:v1')

  const b = Tag.parse('192.168.1.1-/usr/local/data-xxx.txt')
  t.equal(b.version, 'latest', 'version defaults to latest')
  t.equal(b.toString(), '192.168.1.1-/usr/local/data-xxx.txt:latest')

  const u = Tag.parse('192.168.1.1-/usr/local/data-xxx交易数据.txt:2026-11-21')
  t.equal(u.fileName, 'xxx交易数据.txt', 'UTF-8 file names work')
  t.equal(u.version, '2026-11-21')

  const dashFile = Tag.parse('h-/opt/data-my-file.txt')
  t.equal(dashFile.srcDir, '/opt/data')
  t.equal(dashFile.fileName, 'my-file.txt')

  const dashDir = Tag.from({ srcHost: 'h', srcDir: '/opt/ref-data', fileName: 'x-1.csv' })
  t.equal(
    dashDir.toString(),
    'h-/opt/ref-data/-x-1.csv:latest',
    'a dir with "-" is written with a trailing slash',
  )
  const back = Tag.parse(dashDir.toString())
  t.equal(back.srcDir, '/opt/ref-data')
  t.equal(back.fileName, 'x-1.csv')

  const root = Tag.from({ srcHost: 'h', srcDir: '/', fileName: 'f' })
  t.equal(root.toString(), 'h-/-f:latest')
  t.equal(Tag.parse('h-/-f').srcDir, '/')

  const v6 = Tag.parse('::1-/d-f')
  t.equal(v6.srcHost, '::1', 'IPv6 hosts without a version')
  t.equal(v6.version, 'latest')
})

t.test('tag grammar: each rejection names the problem', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['h-/d-f\u0000x', /NUL/],
    ['h-/d-f\u0007', /control character U\+0007/],
    ['h-/d-f\u0085', /control character/],
    ['h-/d-f\ud800', /unpaired surrogate/],
    ['-/d-f', /srcHost is empty/],
    ['host/d-f', /srcHost/],
    ['h-/d', /fileName is missing/],
    ['h-/d/-', /fileName is empty/],
    ['h-/d-f:', /version/],
    ['h-/d-f:bad version', /version/],
    ['h-/a/../b-f', /"\.\." components/],
    ['h-/../etc-passwd', /"\.\." components/],
    ['h-/a//b-f', /empty path component/],
    ['h-/d/-..', /fileName may not be/],
    ['h-/d-a\\b', /"\\"/],
    ['nohyphen', /expected srcHost-srcDir-fileName/],
    [`h-/d-${'x'.repeat(600)}`, /bytes; the limit is 512/],
  ]
  for (const [input, why] of cases) {
    try {
      Tag.parse(input)
      t.fail(`accepted ${JSON.stringify(input)}`)
    } catch (err) {
      t.ok(isShoalError(err, 'INVALID_TAG'), `INVALID_TAG for ${JSON.stringify(input.slice(0, 30))}`)
      t.match((err as Error).message, why)
    }
  }
})

t.test('tag keys are encoded, prefix-preserving and reversible', async (t) => {
  const tag = '192.168.1.1-/usr/local/data-交易数据.txt:latest'
  const key = tagKey(tag)
  t.notOk(key.includes('/'), 'no "/" survives in a key')
  t.notOk(key.includes(':'), 'no ":" survives in a key')
  t.ok(key.includes('交易数据'), 'UTF-8 stays readable')
  t.equal(tagFromKey(key), tag)
  t.ok(key.startsWith(tagKey('192.168.1.1-/usr/lo')), 'prefix of a tag encodes to a prefix of its key')
})

t.test('digest parsing', async (t) => {
  const hex = 'a'.repeat(64)
  t.equal(Digest.parse(`sha256:${hex}`).hex, hex)
  t.equal(Digest.parse(`SHA256:${hex.toUpperCase()}`).toString(), `sha256:${hex}`, 'normalised to lower case')
  t.equal(Digest.fromHex(hex).toString(), `sha256:${hex}`)
  t.equal(
    Digest.fromBuffer(Buffer.from('abc')).hex,
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  )
  for (const bad of [
    hex,
    `sha256:${hex.slice(1)}`,
    `sha256:${'g'.repeat(64)}`,
    `md5:${hex}`,
    `sha256:${hex}/../x`,
    'x'.repeat(1000),
  ]) {
    t.throws(() => Digest.parse(bad), { code: 'INVALID_DIGEST' }, `rejects ${bad.slice(0, 20)}`)
  }
})
