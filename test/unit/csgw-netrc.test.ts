/** The netrc reader and the CSGW address parser: what reaches the server, what may be printed. */
import t from 'tap'
import { checkRemoteName, resolveRemoteDir } from '../../lib/csgw/address.js'
import { parseCsgwAddress } from '../../lib/csgw/index.js'
import { findNetrc, parseNetrc } from '../../lib/csgw/netrc.js'
import { isShoalError } from '../../lib/errors/index.js'

t.test('netrc: machines, default, comments, macdef, one-line form, quotes', async (t) => {
  const entries = parseNetrc(
    [
      '# the CSGW of the trading floor',
      'machine csgw.example login ops password s3cr3t',
      'machine other.example',
      '  login  "with space"',
      '  password "p w\\"d"  # a comment after',
      'macdef init',
      'machine not-a-machine login nope password nope',
      '',
      'default login anonymous password guest@',
    ].join('\n'),
  )
  t.same(findNetrc(entries, 'csgw.example'), { machine: 'csgw.example', login: 'ops', password: 's3cr3t' })
  t.same(findNetrc(entries, 'CSGW.EXAMPLE')?.login, 'ops', 'host names compare case-insensitively')
  t.same(findNetrc(entries, 'other.example'), {
    machine: 'other.example',
    login: 'with space',
    password: 'p w"d',
  })
  t.same(
    findNetrc(entries, 'not-a-machine'),
    { machine: undefined, login: 'anonymous', password: 'guest@' },
    'macdef body skipped; default used',
  )
  t.equal(findNetrc(parseNetrc('machine a login b'), 'z'), undefined, 'no default: nothing')
})

t.test('netrc: errors never quote a password', async (t) => {
  try {
    parseNetrc('login ops password leaked-value')
    t.fail('should throw')
  } catch (err) {
    t.ok(isShoalError(err, 'CONFIG_INVALID'))
    t.notOk((err as Error).message.includes('leaked-value'))
  }
  t.throws(() => parseNetrc('machine h login'), /login without a value/)
})

t.test('address: parsed, redacted, folders resolved', async (t) => {
  const a = parseCsgwAddress('ftp://ops:pa%40ss@csgw.example:2121/data/in/')
  t.same(
    { host: a.host, port: a.port, dir: a.dir, secure: a.secure, user: a.user, password: a.password },
    { host: 'csgw.example', port: 2121, dir: '/data/in', secure: false, user: 'ops', password: 'pa@ss' },
  )
  t.equal(a.redacted, 'ftp://csgw.example:2121/data/in', 'no user or password in the printable form')
  const s = parseCsgwAddress('ftps://csgw.example')
  t.same(
    { port: s.port, dir: s.dir, secure: s.secure, redacted: s.redacted },
    { port: 21, dir: '/', secure: true, redacted: 'ftps://csgw.example:21' },
  )
  t.equal(resolveRemoteDir('/data', 'sub'), '/data/sub')
  t.equal(resolveRemoteDir('/data', '/abs'), '/abs')
  t.equal(resolveRemoteDir('/data', undefined), '/data')
  for (const bad of ['http://x/y', 'ftp://', 'not a url', 'ftp://h/a?b=c'])
    t.throws(() => parseCsgwAddress(bad), { code: 'CONFIG_INVALID' }, bad)
  try {
    parseCsgwAddress('ftp://u:topsecret@')
  } catch (err) {
    t.notOk((err as Error).message.includes('topsecret'), 'a bad address with a password is not echoed')
  }
  t.throws(() => resolveRemoteDir('/data', '../etc'), { code: 'INVALID_PATH' })
  for (const bad of ['', '.', '..', 'a/b', 'x\r\nDELE y'])
    t.throws(() => checkRemoteName(bad), { code: 'INVALID_PATH' }, JSON.stringify(bad))
})

t.test('lib/csgw is the only importer of basic-ftp', async (t) => {
  const { readdir, readFile } = await import('node:fs/promises')
  const { join } = await import('node:path')
  const importers: string[] = []
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name)
      if (e.isDirectory()) await walk(p)
      else if (p.endsWith('.ts') && /from 'basic-ftp'|import\('basic-ftp'\)/.test(await readFile(p, 'utf8')))
        importers.push(p)
    }
  }
  for (const root of ['lib', 'cmd']) await walk(root)
  t.ok(
    importers.length > 0 && importers.every((p) => p.startsWith(join('lib', 'csgw'))),
    importers.join(', '),
  )
})
