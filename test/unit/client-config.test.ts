/**
 * The clients' config: /etc/shoal/client.yaml (here a temp default), --config, SHOAL_CONFIG,
 * the SHOAL_* addresses, precedence env > file > built-in, and the strict schema.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { loadClientSettings } from '../../lib/cli/client-config.js'
import { DEFAULT_AGENT, DEFAULT_APISERVER, DEFAULT_PROXY } from '../../lib/cli/common.js'
import { tempDir } from '../helpers/files.js'

t.test('no file, no environment: the built-in defaults', async (t) => {
  const dir = await tempDir(t)
  const s = loadClientSettings({ env: {}, defaultFile: join(dir, 'absent.yaml') })
  t.same(s, {
    proxy: DEFAULT_PROXY,
    agent: DEFAULT_AGENT,
    csgw: undefined,
    apiserver: DEFAULT_APISERVER,
    tokenFile: undefined,
    flag: { suffix: '.flag', content: 'empty' },
    timeouts: { push: 30, pull: 10, remove: 30 },
    file: undefined,
  })
})

t.test('the default file, then the environment over it', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'client.yaml')
  await writeFile(
    file,
    [
      'proxy: proxy.file:15000',
      'agent: agent.file:16002',
      'csgw: ftp://csgw.file/in',
      'apiserver: herd.file:15006',
      'tokenFile: /etc/shoal/api.token',
      'flag: { suffix: .done, content: digest }',
      'timeouts: { push: 600, pull: 0 }',
    ].join('\n'),
  )
  const fromFile = loadClientSettings({ env: {}, defaultFile: file })
  t.same(fromFile, {
    proxy: 'proxy.file:15000',
    agent: 'agent.file:16002',
    csgw: 'ftp://csgw.file/in',
    apiserver: 'herd.file:15006',
    tokenFile: '/etc/shoal/api.token',
    flag: { suffix: '.done', content: 'digest' },
    timeouts: { push: 600, pull: 0, remove: 30 },
    file,
  })
  const env = {
    SHOAL_PROXY: 'proxy.env:1',
    SHOAL_AGENT: 'agent.env:2',
    SHOAL_CSGW: 'ftp://csgw.env/x',
    SHOAL_APISERVER: 'herd.env:3',
    SHOAL_TOKEN_FILE: '/run/token',
  }
  const fromEnv = loadClientSettings({ env, defaultFile: file })
  t.match(
    fromEnv,
    {
      proxy: 'proxy.env:1',
      agent: 'agent.env:2',
      csgw: 'ftp://csgw.env/x',
      apiserver: 'herd.env:3',
      tokenFile: '/run/token',
    },
    'env > file',
  )
  t.same(fromEnv.flag, { suffix: '.done', content: 'digest' }, 'what env does not set stays from the file')
  t.equal(
    loadClientSettings({ env: { SHOAL_PROXY: '' }, defaultFile: file }).proxy,
    'proxy.file:15000',
    'empty env var: unset',
  )
})

t.test('--config and SHOAL_CONFIG name the file; --config wins', async (t) => {
  const dir = await tempDir(t)
  const a = join(dir, 'a.yaml')
  const b = join(dir, 'b.yaml')
  await writeFile(a, 'proxy: a:1\n')
  await writeFile(b, 'proxy: b:1\n')
  const def = join(dir, 'default.yaml')
  await writeFile(def, 'proxy: default:1\n')
  t.equal(loadClientSettings({ env: { SHOAL_CONFIG: a }, defaultFile: def }).proxy, 'a:1')
  t.equal(loadClientSettings({ file: b, env: { SHOAL_CONFIG: a }, defaultFile: def }).proxy, 'b:1')
})

t.test('a named file that is missing is a usage error; the default may be missing', async (t) => {
  const dir = await tempDir(t)
  const missing = join(dir, 'missing.yaml')
  t.throws(() => loadClientSettings({ file: missing, env: {} }), {
    code: 'USAGE',
    message: `client config ${missing} (--config) does not exist`,
  })
  t.throws(() => loadClientSettings({ env: { SHOAL_CONFIG: missing } }), {
    code: 'USAGE',
    message: `client config ${missing} (SHOAL_CONFIG) does not exist`,
  })
})

t.test('strict: an unknown key or a bad value is refused, naming the key and the file', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'client.yaml')
  await writeFile(file, 'proxi: typo:1\n')
  t.throws(() => loadClientSettings({ file, env: {} }), {
    code: 'USAGE',
    message: new RegExp(`^invalid client config in ${file}: unknown key "proxi"`),
  })
  await writeFile(file, 'flag: { content: yaml }\n')
  t.throws(() => loadClientSettings({ file, env: {} }), { code: 'USAGE', message: /"flag\.content"/ })
  await writeFile(file, 'timeouts: { push: -1 }\n')
  t.throws(() => loadClientSettings({ file, env: {} }), { code: 'USAGE', message: /"timeouts\.push"/ })
  await writeFile(file, 'flag: { suffix: ../x }\n')
  t.throws(() => loadClientSettings({ file, env: {} }), { code: 'USAGE', message: /"flag\.suffix"/ })
  await writeFile(file, 'proxy: [a\n')
  t.throws(() => loadClientSettings({ file, env: {} }), { code: 'USAGE', message: /cannot read config/ })
})
