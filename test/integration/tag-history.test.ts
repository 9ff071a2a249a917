/**
 * Tag history against a real build-index server (real HTTP, a real fs backend), through a real
 * proxy, and through `shoal tags history`.
 */
import t, { type Test } from 'tap'
import { BuildIndexClient } from '../../lib/build-index/client/index.js'
import type { Output } from '../../lib/cli/common.js'
import type { ClientDeps } from '../../lib/cli/output.js'
import { tagsCommand } from '../../lib/cli/tags-program.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest } from '../../lib/core/index.js'
import { HttpClient } from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { ProxyClient } from '../../lib/proxy/client/index.js'
import { ProxyConfigSchema } from '../../lib/proxy/config.js'
import { startProxy } from '../../lib/proxy/server/index.js'
import { testBuildIndex } from '../helpers/build-index.js'
import { cliRunner } from '../helpers/cli-run.js'

const logger = silentLogger()
const d = (n: number) => Digest.fromHex(n.toString(16).padStart(64, '0'))
const listen = { host: '127.0.0.1', port: 0 }

async function setup(t: Test, extra: Record<string, unknown> = {}) {
  const { root, origin, start } = await testBuildIndex(t, extra, 'shoal-history-')
  const server = await start()
  return { root, origin, server, start, client: new BuildIndexClient(server.url) }
}

t.test('every creation, move and delete is recorded, newest first, and survives a restart', async (t) => {
  const { server, client, start } = await setup(t)
  const tag = 'h-/data/ref-prices.csv:latest'
  await client.putTag(tag, d(1), { actor: 'alice@ops' })
  await client.putTag(tag, d(1), { actor: 'alice@ops' }) // unchanged: not a move
  await client.putTag(tag, d(2), { actor: 'bob@ops' })
  await client.deleteTag(tag, { actor: 'carol@ops' })
  await client.putTag(tag, d(3)) // no actor: the caller's address
  const page = await client.history(tag)
  t.same(
    page.entries.map((e) => [e.seq, e.action, e.from, e.to, e.actor]),
    [
      [4, 'created', undefined, d(3).toString(), '127.0.0.1'],
      [3, 'deleted', d(2).toString(), undefined, 'carol@ops'],
      [2, 'moved', d(1).toString(), d(2).toString(), 'bob@ops'],
      [1, 'created', undefined, d(1).toString(), 'alice@ops'],
    ],
  )
  t.equal(page.next, undefined)
  for (const e of page.entries) t.ok(Number.isFinite(Date.parse(e.at)), 'at is a timestamp')

  await server.stop()
  const again = await start()
  t.teardown(() => again.stop())
  const after = await new BuildIndexClient(again.url).history(tag)
  t.same(
    after.entries.map((e) => e.seq),
    [4, 3, 2, 1],
    'stored in the backend, not in memory',
  )
})

t.test('pages by seq; bounded to history.maxEntries per tag', async (t) => {
  const { client } = await setup(t, { history: { maxEntries: 5 } })
  const tag = 'h-/x-y:latest'
  for (let i = 1; i <= 8; i++) await client.putTag(tag, d(i))
  const first = await client.history(tag, { limit: 3 })
  t.same(
    first.entries.map((e) => e.seq),
    [8, 7, 6],
  )
  t.equal(first.next, 6)
  const second = await client.history(tag, { limit: 3, after: first.next })
  t.same(
    second.entries.map((e) => e.seq),
    [5, 4],
    'only the newest 5 are kept',
  )
  t.equal(second.next, undefined)
  t.same(second.entries[1]?.from, d(3).toString(), 'a trimmed entry keeps its old → new digests')
})

t.test('immutable versions: created once, a conflict records nothing, delete records', async (t) => {
  const { client } = await setup(t)
  const tag = 'h-/x-y:v1'
  await client.putTag(tag, d(1))
  await t.rejects(client.putTag(tag, d(2)), { code: 'TAG_CONFLICT' })
  await client.deleteTag(tag)
  t.same(
    (await client.history(tag)).entries.map((e) => e.action),
    ['deleted', 'created'],
  )
  t.same((await client.history('h-/never-put:v1')).entries, [], 'a tag never written has an empty history')
})

t.test('hostile input: bad actor header, bad cursor, bad tag', async (t) => {
  const { server } = await setup(t)
  const raw = new HttpClient(server.url, { name: 'build-index' })
  const tag = encodeURIComponent('h-/x-y:latest')
  await t.rejects(
    raw.json('PUT', `/tags/${tag}/digest/${d(1)}`, { headers: { 'x-shoal-actor': 'x'.repeat(300) } }),
    { code: 'BAD_REQUEST' },
  )
  await t.rejects(raw.json('GET', `/tags/${tag}/history?after=-1`), { code: 'BAD_REQUEST' })
  await t.rejects(raw.json('GET', `/tags/${tag}/history?limit=abc`), { code: 'BAD_REQUEST' })
  await t.rejects(raw.json('GET', '/tags/no-tag-here/history'), { code: 'INVALID_TAG' })
  t.same((await new BuildIndexClient(server.url).history('h-/x-y:latest')).entries, [], 'nothing recorded')
})

t.test('history disabled: writes still work, the route says so', async (t) => {
  const { client } = await setup(t, { history: { enabled: false } })
  await client.putTag('h-/x-y:latest', d(1))
  await t.rejects(client.history('h-/x-y:latest'), { code: 'NOT_FOUND', message: /disabled/ })
})

t.test('through the proxy: the pusher is recorded, not the proxy; shoal tags history', async (t) => {
  const { server, origin, root } = await setup(t)
  const proxy = await startProxy(
    validateConfig(ProxyConfigSchema, { server: listen, origins: [origin], buildIndex: server.url }),
    { logger },
  )
  t.teardown(() => proxy.stop())
  const tag = 'h-/data/ref-prices.csv:latest'
  const pusher = new ProxyClient(proxy.url, { actor: 'dave@pushhost' })
  await pusher.putTag(tag, d(1))
  await pusher.putTag(tag, d(2))
  await pusher.deleteTag(tag)
  const anonymous = new ProxyClient(proxy.url)
  t.ok(anonymous.actor?.includes('@'), 'a client names its user@host by default')
  await anonymous.putTag(tag, d(3))

  const page = await pusher.history(tag, { limit: 2 })
  t.same(
    page.entries.map((e) => [e.action, e.actor]),
    [
      ['created', anonymous.actor],
      ['deleted', 'dave@pushhost'],
    ],
  )
  t.equal(page.next, 3)
  t.same(
    (await pusher.history(tag, { after: page.next })).entries.map((e) => e.action),
    ['moved', 'created'],
  )

  const run = cliRunner(root)
  const make = (io?: Output, deps?: ClientDeps) => tagsCommand(io, deps, 'shoal-tags')
  const json = await run(make, ['history', tag, '--dst-host', proxy.url.replace('http://', ''), '--json'])
  t.equal(json.code, 0, json.err)
  const parsed = JSON.parse(json.out) as { tag: string; entries: { action: string }[]; more: boolean }
  t.equal(parsed.tag, tag)
  t.same(
    parsed.entries.map((e) => e.action),
    ['created', 'deleted', 'moved', 'created'],
  )
  t.equal(parsed.more, false)

  const human = await run(make, ['history', tag, '--build-index', server.url, '--limit', '2'])
  t.equal(human.code, 0, human.err)
  t.equal(human.outLines.length, 3)
  t.match(human.outLines[1], /deleted\tsha256:0+2 → -\tdave@pushhost/)
  t.match(human.outLines[2], /older entries/)

  const bad = await run(make, ['history', tag, '--limit', '0'])
  t.equal(bad.code, 2, 'a bad flag is a usage error')
})
