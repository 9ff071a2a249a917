/** NamespaceBackends: first match wins, whole-namespace regexes, the fallback, and its errors. */
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { MemoryBackend } from '../../lib/backend/memory.js'
import { NamespaceBackends, NamespaceBackendsConfig } from '../../lib/backend/router.js'
import { loadConfig, validateConfig } from '../../lib/config/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'

t.test('first match wins; the regex must match the whole namespace', async (t) => {
  const prod = new MemoryBackend()
  const any = new MemoryBackend()
  const r = new NamespaceBackends([
    { namespace: 'prod/.*', backend: prod },
    { namespace: 'prod/x|library', backend: any },
  ])
  t.equal(r.for('prod/x'), prod, 'the first of two matching entries')
  t.equal(r.for('library'), any)
  t.throws(
    () => r.for('library-old'),
    { code: 'BAD_REQUEST', message: /namespace "library-old".*prod\/\.\*, prod\/x\|library/ },
    'anchored: no partial match; the error names the namespace and the entries',
  )
  t.throws(() => r.for('xprod/a'), { code: 'BAD_REQUEST' }, 'anchored at the start too')
  t.same(r.all(), [prod, any])
})

t.test('the fallback serves what no entry matches', async (t) => {
  const special = new MemoryBackend()
  const fallback = new MemoryBackend()
  const r = new NamespaceBackends([{ namespace: 'special', backend: special }], fallback)
  t.equal(r.for('special'), special)
  t.equal(r.for('other'), fallback)
  t.same(r.all(), [special, fallback])
  t.equal(NamespaceBackends.single(fallback).for('anything'), fallback)
  t.match(r.describe(), /special → memory, \* → memory/)
})

t.test('a bad regex is CONFIG_INVALID naming the entry', async (t) => {
  const list = validateConfig(NamespaceBackendsConfig, [
    { namespace: 'ok', backend: { type: 'memory' } },
    { namespace: 'prod/(', backend: { type: 'memory' } },
  ])
  let built = 0
  t.throws(
    () =>
      NamespaceBackends.fromConfig(list, undefined, () => {
        built++
        return new MemoryBackend()
      }),
    {
      code: 'CONFIG_INVALID',
      message: /namespaces\[1\]\.namespace "prod\/\(" is not a valid regular expression/,
    },
  )
  t.equal(built, 0, 'no backend is built before every regex compiled')
})

t.test('check runs each distinct backend once', async (t) => {
  const calls: string[] = []
  const mk = (name: string) =>
    Object.assign(new MemoryBackend(), { check: async () => void calls.push(name) })
  const a = mk('a')
  const b = mk('b')
  const r = new NamespaceBackends(
    [
      { namespace: 'x', backend: a },
      { namespace: 'y', backend: a },
    ],
    b,
  )
  await r.check()
  t.same(calls, ['a', 'b'])
})

t.test('origin config: backend and namespaces side by side', async (t) => {
  const c = validateConfig(OriginConfigSchema, {
    backend: { type: 'fs', root: './x' },
    namespaces: [
      { namespace: 'prod/.*', backend: { type: 's3', bucket: 'shoal-prod', endpoint: 'http://minio:9000' } },
    ],
  })
  const s3 = c.namespaces[0]?.backend
  t.equal(s3?.type === 's3' && s3.forcePathStyle, true, 'path style by default with an endpoint')
  t.equal(s3?.type === 's3' && s3.region, 'us-east-1')
  t.same(validateConfig(OriginConfigSchema, {}).namespaces, [], 'no namespaces by default')
  t.throws(() => validateConfig(OriginConfigSchema, { namespaces: [{ namespace: 'a' }] }), {
    code: 'CONFIG_INVALID',
  })
  t.throws(
    () =>
      validateConfig(OriginConfigSchema, {
        backend: { type: 's3', bucket: 'b-1', credentials: { accessKeyId: 'a' } },
      }),
    { code: 'CONFIG_INVALID' },
    'credentials need both parts',
  )
})

t.test('examples/origin-s3.yaml is a valid origin config', async (t) => {
  const file = fileURLToPath(new URL('../../examples/origin-s3.yaml', import.meta.url))
  const c = loadConfig(OriginConfigSchema, { component: 'origin', file })
  t.equal(c.backend?.type, 's3')
  t.equal(c.backend?.type === 's3' && c.backend.prefix, 'origin/', 'a trailing / is added to the prefix')
  t.equal(c.namespaces[0]?.namespace, 'scratch-.*')
  const routes = NamespaceBackends.fromConfig(c.namespaces, c.backend)
  t.equal(routes.for('scratch-1').kind, 'fs')
  t.equal(routes.for('prod').kind, 's3')
})
