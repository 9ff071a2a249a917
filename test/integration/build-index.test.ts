import t, { type Test } from 'tap'
import { MemoryBackend } from '../../lib/backend/memory.js'
import { BuildIndexClient } from '../../lib/build-index/client/index.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { startBuildIndex } from '../../lib/build-index/server/index.js'
import { loadConfig, validateConfig } from '../../lib/config/index.js'
import { Digest, Tag } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import { HttpClient, HttpServer, sendEmpty, sendJson } from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'

const logger = silentLogger()
const d = (n: number) => Digest.fromHex(n.toString(16).padStart(64, '0'))

/** A fake origin: answers HEAD for the digests it holds and says it owns every digest. */
async function fakeOrigin(t: Test) {
  const held = new Set<string>()
  const heads: Array<{ ns: string; digest: string }> = []
  const server = new HttpServer({ name: 'fake-origin', logger })
  const addr = await server.start(0, '127.0.0.1')
  const self = `127.0.0.1:${addr.port}`
  server.router.get('/blobs/:digest/locations', ({ res }) => sendJson(res, 200, { locations: [self] }))
  server.router.head('/namespace/:ns/blobs/:digest', ({ res, params }) => {
    heads.push({ ns: params.ns as string, digest: params.digest as string })
    if (held.has(params.digest as string)) sendEmpty(res, 200, { 'content-length': 42 })
    else sendJson(res, 404, { code: 'BLOB_NOT_FOUND', message: 'not here' })
  })
  t.teardown(() => server.stop())
  return { held, heads, self }
}

async function setup(t: Test) {
  const origin = await fakeOrigin(t)
  for (let i = 1; i <= 3; i++) origin.held.add(d(i).toString())
  const config = validateConfig(BuildIndexConfigSchema, {
    server: { host: '127.0.0.1', port: 0 },
    origins: [origin.self],
  })
  const backend = new MemoryBackend()
  const server = await startBuildIndex(config, { logger, backend })
  t.teardown(() => server.stop())
  const client = new BuildIndexClient(server.url)
  return { origin, server, client, backend, raw: new HttpClient(server.url, { name: 'build-index' }) }
}

t.test('config: {} is valid, files load, unknown keys are refused', async (t) => {
  const defaults = validateConfig(BuildIndexConfigSchema, {})
  t.equal(defaults.server.port, 15004)
  t.same(defaults.origins, ['127.0.0.1:15002'])
  t.equal(defaults.namespace, 'default')
  t.equal(defaults.list.defaultLimit, 100)
  t.same(defaults.backend, { type: 'fs', root: './data/backend' })
  const base = loadConfig(BuildIndexConfigSchema, { component: 'build-index', env: 'base' })
  t.same(base, defaults, 'base.yaml states exactly the defaults')
  const dev = loadConfig(BuildIndexConfigSchema, { component: 'build-index', env: 'development' })
  t.equal(dev.server.host, '127.0.0.1')
  t.throws(() => validateConfig(BuildIndexConfigSchema, { orgins: [] }), {
    code: 'CONFIG_INVALID',
    message: /unknown key "orgins"/,
  })
})

t.test('put, get, head, delete, list through the client', async (t) => {
  const { client, origin } = await setup(t)
  const tag = Tag.parse('192.168.1.1-/usr/local/data-交易数据.txt:v1')

  t.equal(await client.hasTag(tag), false)
  const put = await client.putTag(tag, d(1))
  t.equal(put.result, 'created')
  t.equal(put.tag, '192.168.1.1-/usr/local/data-交易数据.txt:v1')
  t.ok(put.digest.equals(d(1)))
  t.same(
    origin.heads.at(-1),
    { ns: 'default', digest: d(1).toString() },
    'the origin was asked in the default namespace',
  )

  t.ok((await client.getTag(tag)).equals(d(1)), 'UTF-8 tag resolves')
  t.ok((await client.getTag(tag.toString())).equals(d(1)), 'string tags work too')
  t.equal(await client.hasTag(tag), true)
  const info = await client.tagInfo(tag)
  t.match(info.createdAt, /^\d{4}-\d\d-\d\dT/)

  t.equal((await client.putTag(tag, d(1))).result, 'unchanged', 'same digest again is a success')
  await t.rejects(client.putTag(tag, d(2)), {
    code: 'TAG_CONFLICT',
    status: 409,
    message: /versions other than latest are immutable/,
  })

  const latest = tag.withVersion('latest')
  await client.putTag(latest, d(1))
  const moved = await client.putTag(latest, d(2), { ns: 'other-ns' })
  t.equal(moved.result, 'moved')
  t.equal(moved.previous, d(1).toString())
  t.same(origin.heads.at(-1), { ns: 'other-ns', digest: d(2).toString() }, '?ns= reaches the origin check')

  for (const v of ['v2', 'v3', 'v4']) await client.putTag(tag.withVersion(v), d(3))
  await client.putTag(Tag.parse('otherhost-/x-y.txt:v1'), d(3))

  const prefix = '192.168.1.1-/usr/local/data-交易数据.txt:'
  const all: string[] = []
  for await (const name of client.listAll(prefix, { pageSize: 2 })) all.push(name)
  t.same(all.sort(), ['latest', 'v1', 'v2', 'v3', 'v4'].map((v) => prefix + v).sort())
  const first = await client.list(prefix, { limit: 2 })
  t.equal(first.tags.length, 2)
  t.ok(first.next)
  const second = await client.list(prefix, { limit: 2, after: first.next })
  t.equal(second.tags.length, 2)
  t.notOk(
    second.tags.some((x) => first.tags.includes(x)),
    'pages do not overlap',
  )
  t.equal((await client.list('')).tags.length, 6, 'empty prefix lists everything')

  await client.deleteTag(tag)
  t.equal(await client.hasTag(tag), false)
  await t.rejects(client.deleteTag(tag), { code: 'TAG_NOT_FOUND' })
})

t.test('errors name the problem', async (t) => {
  const { client, raw } = await setup(t)
  const unknown = Tag.parse('h-/data-nothing.txt:v9')
  await t.rejects(client.getTag(unknown), {
    code: 'TAG_NOT_FOUND',
    status: 404,
    message: 'tag not found: h-/data-nothing.txt:v9',
  })

  for (const bad of ['h-/data/../etc-passwd:v1', '../../etc/passwd', 'h-/a/./b-f']) {
    await t.rejects(client.putTag(bad, d(1)), { code: 'INVALID_TAG', status: 400 }, `"${bad}" is refused`)
    await t.rejects(client.getTag(bad), { code: 'INVALID_TAG', status: 400 })
  }
  await t.rejects(client.putTag('h-/data-f.txt:v1', d(99)), {
    code: 'BLOB_NOT_FOUND',
    status: 404,
    message: /push the blob first/,
  })
  t.equal(await client.hasTag('h-/data-f.txt:v1'), false, 'nothing was written')

  const tryRaw = async (method: string, path: string) =>
    raw.request(method, path).then(
      () => undefined,
      (err: unknown) => err,
    )
  const garbage = await tryRaw('GET', '/tags/%E0%A4%A')
  t.ok(isShoalError(garbage, 'BAD_REQUEST'), 'broken percent-encoding is a 400')
  t.equal((garbage as { status: number }).status, 400)
  t.ok(isShoalError(await tryRaw('PUT', '/tags/h-%2Fd-f%3Av1/digest/sha256:xyz'), 'INVALID_DIGEST'))
  t.ok(isShoalError(await tryRaw('PUT', '/tags/h-%2Fd-f%3Av1/digest/md5:abc'), 'INVALID_DIGEST'))
  t.ok(
    isShoalError(await tryRaw('PUT', `/tags/h-%2Fd-f%3Av1/digest/${d(1)}?ns=..%2Fx`), 'BAD_REQUEST'),
    'bad namespace',
  )
  t.ok(isShoalError(await tryRaw('GET', '/list/x?limit=0'), 'BAD_REQUEST'), 'limit 0')
  t.ok(isShoalError(await tryRaw('GET', '/list/x?limit=abc'), 'BAD_REQUEST'), 'limit abc')
})

t.test('list routes, limits and the service endpoints', async (t) => {
  const { client, raw } = await setup(t)
  for (let i = 0; i < 5; i++) await client.putTag(`h-/data-f${i}.txt:v1`, d(1))
  const bare = await raw.json<{ tags: string[] }>('GET', '/list')
  const slash = await raw.json<{ tags: string[] }>('GET', '/list/')
  t.equal(bare.tags.length, 5, 'GET /list lists every tag')
  t.same(slash, bare, 'GET /list/ is the same')
  const page = await raw.json<{ tags: string[]; next?: string }>('GET', '/list/h-%2Fdata-?limit=3')
  t.equal(page.tags.length, 3)
  t.equal(page.next, page.tags[2])
  const big = await raw.json<{ tags: string[] }>('GET', '/list/?limit=999999')
  t.equal(big.tags.length, 5, 'a huge limit is clamped, not refused')

  t.equal(await raw.status('GET', '/health'), 200)
  t.equal(await raw.status('GET', '/readiness'), 200)
  const metrics = (await raw.buffer('GET', '/metrics')).toString()
  t.match(metrics, /shoal_build_index_tag_puts_total\{result="created",component="build-index"\} 5/)
})

t.test('tags survive a restart on the fs backend; start and stop are idempotent', async (t) => {
  const origin = await fakeOrigin(t)
  origin.held.add(d(1).toString())
  const root = t.testdir({})
  const config = validateConfig(BuildIndexConfigSchema, {
    server: { host: '127.0.0.1', port: 0 },
    origins: [origin.self],
    backend: { type: 'fs', root },
  })
  const tags = [
    '192.168.1.1-/usr/local/data-交易数据.txt:v1',
    'h-/opt/ref-data/-x-1.csv:2026-11-21',
    'h-/-f:latest',
  ]
  const first = await startBuildIndex(config, { logger })
  t.teardown(() => first.stop())
  const url = first.url
  await first.start()
  t.equal(first.url, url, 'a second start() changes nothing')
  for (const tag of tags) await new BuildIndexClient(first.url).putTag(tag, d(1))
  await first.stop()
  await first.stop()
  t.throws(() => first.url, { code: 'UNAVAILABLE' })

  const second = await startBuildIndex(config, { logger })
  t.teardown(() => second.stop())
  const client = new BuildIndexClient(second.url)
  for (const tag of tags) t.ok((await client.getTag(tag)).equals(d(1)), `${tag} survived the restart`)
  t.same((await client.list('')).tags.sort(), [...tags].sort())
  t.same((await client.list('h-/opt/ref-data/')).tags, ['h-/opt/ref-data/-x-1.csv:2026-11-21'])
  await t.rejects(
    client.putTag(tags[0] as string, d(2)),
    { code: 'TAG_CONFLICT' },
    'immutability holds across restarts',
  )
})
