/**
 * Tag metadata (type, desc) and tag lists across the daemons, on real sockets: a build-index
 * (tags in memory; "does the origin cluster hold the blob" answered yes), a proxy in front of
 * it, and an agent resolving through it.
 *
 * - meta round trip: proxy → build-index → proxy tagInfo, build-index tagInfo, agent resolveInfo;
 * - the update rules: `latest` put again at the same digest takes a new meta; an immutable
 *   version keeps its first meta; a put without meta clears nothing; a move takes the new meta;
 * - bad meta refused with a clear message, at the proxy and at build-index: too long a desc,
 *   a wrong type, a body that is not JSON (400), an oversized body (413); nothing is stored;
 * - records written before meta existed still load (and answer without meta);
 * - ProxyClient.tagInfo: undefined for an unknown tag;
 * - lists through the proxy and the agent: prefix, paging, bad limit.
 */
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { AgentClient } from '../../lib/agent/client/index.js'
import { MemoryBackend } from '../../lib/backend/index.js'
import { BuildIndexClient } from '../../lib/build-index/client/index.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { startBuildIndex, tagObjectKey } from '../../lib/build-index/server/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest, Tag } from '../../lib/core/index.js'
import { isShoalError, type ShoalError } from '../../lib/errors/index.js'
import { urlPath } from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { ProxyClient } from '../../lib/proxy/client/index.js'
import { ProxyConfigSchema } from '../../lib/proxy/config.js'
import { startProxy } from '../../lib/proxy/server/index.js'
import { startTestAgent } from '../helpers/agent.js'
import { tempDir } from '../helpers/files.js'

const d = (n: number) => Digest.fromBuffer(Buffer.from(`blob ${n}`))

async function setup(t: Test) {
  const logger = silentLogger()
  const listen = { host: '127.0.0.1', port: 0 }
  const backend = new MemoryBackend()
  const buildIndex = await startBuildIndex(
    validateConfig(BuildIndexConfigSchema, { server: listen, origins: ['127.0.0.1:9'] }),
    { logger, backend, blobCheck: { exists: async () => true } },
  )
  t.teardown(() => buildIndex.stop())
  const proxy = await startProxy(
    validateConfig(ProxyConfigSchema, {
      server: listen,
      origins: ['127.0.0.1:9'],
      buildIndex: buildIndex.url,
    }),
    { logger },
  )
  t.teardown(() => proxy.stop())
  const agent = await startTestAgent(t, {
    dataDir: join(await tempDir(t), 'agent'),
    trackers: ['127.0.0.1:9'],
    buildIndex: buildIndex.url,
    deps: { logger },
  })
  return {
    backend,
    buildIndex: new BuildIndexClient(buildIndex.url),
    proxy: new ProxyClient(proxy.url),
    agent: new AgentClient(agent.url),
  }
}

async function refusal(p: Promise<unknown>): Promise<ShoalError> {
  try {
    await p
  } catch (err) {
    if (isShoalError(err)) return err
    throw err
  }
  throw new Error('expected a refusal, got an answer')
}

t.test('meta round trip: proxy → build-index → agent, and the update rules', async (t) => {
  const { proxy, buildIndex, agent } = await setup(t)
  const v1 = Tag.parse('meta-/srv/ref-prices:v1')
  const latest = Tag.parse('meta-/srv/ref-prices')
  const desc = 'end-of-day prices, 交易数据 (UTF-8)'
  await proxy.putTag(v1, d(1), { meta: { type: 'directory', desc } })
  const info = await proxy.tagInfo(v1)
  t.ok(info?.digest.equals(d(1)))
  t.equal(info?.type, 'directory')
  t.equal(info?.desc, desc)
  t.match(info?.createdAt, /^\d{4}-\d\d-\d\dT/)
  t.match(info?.updatedAt, /^\d{4}-\d\d-\d\dT/)
  t.same(
    { type: (await buildIndex.tagInfo(v1)).type, desc: (await buildIndex.tagInfo(v1)).desc },
    { type: 'directory', desc },
    'build-index stored it',
  )
  const resolved = await agent.resolveInfo(v1)
  t.same(
    {
      tag: resolved.tag,
      digest: resolved.digest.toString(),
      type: resolved.type,
      desc: resolved.desc,
      source: resolved.source,
    },
    { tag: v1.toString(), digest: d(1).toString(), type: 'directory', desc, source: 'build-index' },
    'the agent answers the meta',
  )

  // An immutable version keeps the meta it was first written with.
  const again = await proxy.putTag(v1, d(1), { meta: { type: 'file', desc: 'changed' } })
  t.equal(again.result, 'unchanged')
  t.equal((await proxy.tagInfo(v1))?.desc, desc, 'immutable: first meta kept')
  t.equal((await proxy.tagInfo(v1))?.type, 'directory')
  t.equal((await refusal(proxy.putTag(v1, d(2), { meta: { desc } }))).code, 'TAG_CONFLICT')

  // latest: same digest with a new meta updates it; without meta changes nothing; a move takes the new one.
  await proxy.putTag(latest, d(1), { meta: { type: 'file', desc: 'first' } })
  const updated = await proxy.putTag(latest, d(1), { meta: { type: 'file', desc: 'fixed description' } })
  t.equal(updated.result, 'unchanged')
  t.equal((await proxy.tagInfo(latest))?.desc, 'fixed description', 'latest takes the new meta')
  await proxy.putTag(latest, d(1))
  t.equal((await proxy.tagInfo(latest))?.desc, 'fixed description', 'a put without meta clears nothing')
  await proxy.putTag(latest, d(2), { ns: 'default' })
  const moved = await proxy.tagInfo(latest)
  t.ok(moved?.digest.equals(d(2)))
  t.equal(moved?.desc, undefined, 'moved without meta: the new content has none')
  t.equal(moved?.type, undefined)
  await proxy.putTag(latest, d(3), { meta: { type: 'directory' } })
  t.equal((await agent.resolveInfo(latest)).type, 'directory', 'moved with meta')

  // The old call forms still work.
  await proxy.putTag(Tag.parse('meta-/srv/ref-x:v1'), d(1), AbortSignal.timeout(10_000))
  t.ok((await proxy.getTag('meta-/srv/ref-x:v1')).equals(d(1)))
  t.ok((await agent.resolve(Tag.parse('meta-/srv/ref-x:v1'))).equals(d(1)))
  t.equal(await proxy.tagInfo('meta-/srv/ref-nothing:v1'), undefined, 'tagInfo: undefined for an unknown tag')
})

t.test('bad meta is refused with a clear message, and nothing is stored', async (t) => {
  const { proxy, buildIndex } = await setup(t)
  const tag = 'bad-/srv/meta-file:v1'
  const path = urlPath`/tags/${tag}/digest/${d(1)}`
  const cases: Array<{ what: string; body: string; status: number; code: string; message: RegExp }> = [
    {
      what: 'too long a desc',
      body: JSON.stringify({ desc: 'x'.repeat(1025) }),
      status: 400,
      code: 'BAD_REQUEST',
      message: /invalid tag metadata: desc is 1025 bytes \(UTF-8\); the limit is 1024/,
    },
    {
      what: 'a wrong type',
      body: JSON.stringify({ type: 'folder' }),
      status: 400,
      code: 'BAD_REQUEST',
      message: /invalid tag metadata: type must be "file" or "directory", not "folder"/,
    },
    {
      what: 'a control character',
      body: JSON.stringify({ desc: 'a\tb' }),
      status: 400,
      code: 'BAD_REQUEST',
      message: /control character U\+0009/,
    },
    {
      what: 'a body that is not JSON',
      body: 'type=file',
      status: 400,
      code: 'BAD_REQUEST',
      message: /invalid tag metadata: the request body is not valid JSON/,
    },
    {
      what: 'an oversized body',
      body: JSON.stringify({ desc: 'x'.repeat(5000) }),
      status: 413,
      code: 'PAYLOAD_TOO_LARGE',
      message: /request body of \d+ bytes exceeds the limit of 4096/,
    },
  ]
  for (const c of cases) {
    for (const [name, http, p] of [
      ['proxy', proxy.http, `/proxy${path}`],
      ['build-index', buildIndex.http, path],
    ] as const) {
      const err = await refusal(
        http.json('PUT', p, { body: c.body, headers: { 'content-type': 'application/json' } }),
      )
      t.equal(err.code, c.code, `${name}, ${c.what}: ${c.code}`)
      t.equal(err.status, c.status, `${name}, ${c.what}: ${c.status}`)
      t.match(err.message, c.message, `${name}, ${c.what}: says what is wrong`)
    }
  }
  const typed = await refusal(proxy.putTag(tag, d(1), { meta: { desc: 'é'.repeat(600) } }))
  t.match(typed.message, /desc is 1200 bytes/, 'ProxyClient.putTag passes the refusal on')
  t.equal(await proxy.tagInfo(tag), undefined, 'no refused put stored the tag')
})

t.test('records written before meta existed still load', async (t) => {
  const { backend, proxy, agent, buildIndex } = await setup(t)
  const tag = Tag.parse('old-/srv/legacy-file.bin:v7')
  const record = {
    tag: tag.toString(),
    digest: d(7).toString(),
    createdAt: '2025-01-02T03:04:05.000Z',
    updatedAt: '2025-01-02T03:04:05.000Z',
  }
  const body = Buffer.from(JSON.stringify(record))
  await backend.put(tagObjectKey(tag), body, { size: body.length })
  const info = await proxy.tagInfo(tag)
  t.same({ ...info, digest: info?.digest.toString() }, { ...record }, 'proxy: the old record, no meta fields')
  t.same(await buildIndex.tagInfo(tag).then((i) => [i.type, i.desc]), [undefined, undefined])
  const resolved = await agent.resolveInfo(tag)
  t.ok(resolved.digest.equals(d(7)))
  t.notOk('type' in resolved || 'desc' in resolved, 'the agent answers without meta fields')
  t.equal((await proxy.putTag(tag, d(7))).result, 'unchanged', 'a put of the same digest still matches')
})

t.test('lists through the proxy and the agent: prefix and paging', async (t) => {
  const { proxy, agent } = await setup(t)
  const mine = ['lst-/d-a.bin:v1', 'lst-/d-a.bin:v2', 'lst-/d-a.bin:v3', 'lst-/d-a.bin:latest']
  const others = ['lst-/d-b.bin:v1', 'other-/x-y.bin:v1']
  for (const tag of [...mine, ...others]) await proxy.putTag(tag, d(1))

  for (const [name, client] of [
    ['proxy', proxy],
    ['agent', agent],
  ] as const) {
    const seen: string[] = []
    let after: string | undefined
    let pages = 0
    do {
      const page = await client.list('lst-/d-a.bin', { after, limit: 3 })
      t.ok(page.tags.length <= 3, `${name}: a page holds at most the limit`)
      seen.push(...page.tags)
      after = page.next
      pages++
    } while (after !== undefined && pages < 10)
    t.equal(pages, 2, `${name}: 4 tags in pages of 3`)
    t.same(seen.sort(), [...mine].sort(), `${name}: every tag under the prefix, once`)
    t.same((await client.list('')).tags.sort(), [...mine, ...others].sort(), `${name}: '' lists all`)
    t.same((await client.list('nothing-')).tags, [], `${name}: an empty list`)
    const bad = await refusal(client.list('lst-', { limit: 0 }))
    t.equal(bad.code, 'BAD_REQUEST', `${name}: a bad limit is refused`)
  }
  const bare = await proxy.http.json<{ tags: string[] }>('GET', '/proxy/list?limit=100')
  t.equal(bare.tags.length, 6, 'GET /proxy/list (no slash) lists all')
  const viaAgent = await agent.http.json<{ tags: string[] }>('GET', '/list')
  t.equal(viaAgent.tags.length, 6, 'GET /list on the agent lists all')
})
