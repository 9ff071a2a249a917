/**
 * The event log against a real in-process herd (proxy, build-index, origin, apiserver with its
 * file store): pushes and tag writes become events with the right fields; `shoal events` lists
 * and filters them and --follow keeps following across a herd restart; retention prunes; a
 * recorder whose apiserver is down drops (counted) and never holds up a push.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { KindRegistry } from '../../lib/apiserver/registry.js'
import { ApiServer, ApiServerConfigSchema } from '../../lib/apiserver/server/index.js'
import { type Output, runCli } from '../../lib/cli/common.js'
import { type EventsDeps, eventsCommand } from '../../lib/cli/events-program.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest } from '../../lib/core/index.js'
import {
  EVENTS_NAMESPACE,
  type EventInput,
  EventKind,
  type EventResource,
  type EventSpecT,
} from '../../lib/events/index.js'
import { HerdConfigSchema } from '../../lib/herd/config.js'
import { type Herd, startHerd } from '../../lib/herd/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { ProxyClient } from '../../lib/proxy/client/index.js'
import { ProxyConfigSchema } from '../../lib/proxy/config.js'
import { startProxy } from '../../lib/proxy/server/index.js'

const logger = silentLogger()

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`not true within ${ms} ms: ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-events-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function herdConfig(dir: string, extra: Record<string, unknown> = {}) {
  return validateConfig(HerdConfigSchema, {
    dataDir: join(dir, 'herd'),
    bindHost: '127.0.0.1',
    basePort: 0,
    log: { level: 'silent' },
    ...extra,
  })
}

async function events(herd: Herd): Promise<EventSpecT[]> {
  const list = await (herd.apiserver as ApiServer).store.list(EventKind, { namespace: EVENTS_NAMESPACE })
  return (list.items as EventResource[]).map((e) => e.spec)
}

function blob(text: string): { data: Buffer; digest: Digest } {
  const data = Buffer.from(text)
  return { data, digest: Digest.fromBuffer(data) }
}

async function push(proxy: ProxyClient, b: { data: Buffer; digest: Digest }) {
  return proxy.pushBlob('default', b.digest, Readable.from([b.data]), b.data.length)
}

/** Runs `shoal events ARGS` in-process; `deps` adds the abort signal and the follow hook. */
async function shoalEvents(herd: Herd | string, args: string[], deps: EventsDeps = {}) {
  const out: string[] = []
  const err: string[] = []
  const io: Output = { out: (l) => out.push(l), err: (l) => err.push(l) }
  const url = typeof herd === 'string' ? herd : (herd.urls.apiserver as string)
  const run = runCli(
    eventsCommand(io, { env: {}, defaultConfigFile: '/nonexistent/client.yaml', ...deps }),
    ['node', 'events', '--apiserver', url, ...args],
    io,
  )
  return { out, err, done: run }
}

t.test(
  'pushes and tag writes are events with the right fields; shoal events lists and filters them',
  async (t) => {
    const dir = await tempDir(t)
    const herd = await startHerd(herdConfig(dir), { logger })
    t.teardown(() => herd.stop())
    const proxy = new ProxyClient(herd.urls.proxy, { actor: 'alice@ops' })
    const a = blob('first version')
    const b = blob('second version')
    const missing = blob('never pushed')
    const tag = 'h-/data/ref-prices.csv:latest'
    t.same(await push(proxy, a), { existed: false, size: a.data.length })
    t.same(await push(proxy, a), { existed: true, size: a.data.length })
    await push(proxy, b)
    await proxy.putTag(tag, a.digest)
    await proxy.putTag(tag, b.digest)
    await proxy.putTag(tag, b.digest) // unchanged: no event
    await t.rejects(proxy.putTag('h-/data-other.csv:latest', missing.digest), { code: 'BLOB_NOT_FOUND' })
    await proxy.deleteTag(tag)

    await until('7 events stored', async () => (await events(herd)).length === 7)
    const all = await events(herd)
    t.same(
      all.map((e) => [e.action, e.outcome, e.subject]),
      [
        ['push', 'ok', a.digest.toString()],
        ['push', 'ok', a.digest.toString()],
        ['push', 'ok', b.digest.toString()],
        ['tag.put', 'ok', tag],
        ['tag.move', 'ok', tag],
        ['tag.put', 'failed', 'h-/data-other.csv:latest'],
        ['tag.delete', 'ok', tag],
      ],
    )
    for (const e of all) {
      t.equal(e.actor, 'alice@ops', `${e.action}: the pusher is the actor`)
      t.equal(e.host, hostname())
      t.ok(Number.isFinite(Date.parse(e.time)))
    }
    t.match(all[0], {
      digest: a.digest.toString(),
      details: { ns: 'default', size: a.data.length, result: 'stored' },
    })
    t.match(all[1], { details: { result: 'existed' } })
    t.match(all[3], { tag, digest: a.digest.toString(), details: { to: a.digest.toString() } })
    t.match(all[4], { tag, details: { from: a.digest.toString(), to: b.digest.toString() } })
    t.match(all[5], { error: /^BLOB_NOT_FOUND: / })
    t.match(all[6], { tag, digest: b.digest.toString(), details: { from: b.digest.toString() } })

    const human = await shoalEvents(herd, [])
    t.equal(await human.done, 0, human.err.join('\n'))
    t.equal(human.out.length, 7, 'one line per event')
    t.match(human.out[4], /tag\.move .*h-\/data\/ref-prices\.csv:latest {2}by alice@ops on /)

    const byTag = await shoalEvents(herd, ['--tag', tag, '--json'])
    t.equal(await byTag.done, 0)
    const objs = byTag.out.map((l) => JSON.parse(l))
    t.same(
      objs.map((o) => o.action),
      ['tag.put', 'tag.move', 'tag.delete'],
      '--tag: only that tag',
    )
    t.match(objs[0], { name: /^\d{17}-/, tag, actor: 'alice@ops' })

    const failed = await shoalEvents(herd, ['--outcome', 'failed', '--action', 'tag.put', '--json'])
    t.equal(await failed.done, 0)
    t.equal(failed.out.length, 1)
    const tagFamily = await shoalEvents(herd, ['--action', 'tag.*', '--outcome', 'ok'])
    t.equal(await tagFamily.done, 0)
    t.equal(tagFamily.out.length, 3, '--action tag.*: put, move, delete')
    const recent = await shoalEvents(herd, ['--since', '1h', '--action', 'push'])
    t.equal(await recent.done, 0)
    t.equal(recent.out.length, 3)
    const future = await shoalEvents(herd, ['--since', new Date(Date.now() + 3_600_000).toISOString()])
    t.equal(await future.done, 0)
    t.same(future.out, [], '--since in the future: nothing')
    const bad = await shoalEvents(herd, ['--since', 'yesterday'])
    t.equal(await bad.done, 2, 'a bad --since is a usage error')
    t.match(bad.err.join('\n'), /invalid --since yesterday/)
  },
)

t.test('shoal events --follow prints new events and keeps following across a herd restart', async (t) => {
  const dir = await tempDir(t)
  let herd = await startHerd(herdConfig(dir), { logger })
  t.teardown(() => herd.stop())
  const apiserver = herd.urls.apiserver as string
  const port = Number(new URL(apiserver).port)
  const c = blob('followed')
  await push(new ProxyClient(herd.urls.proxy), c)
  await until('the first event stored', async () => (await events(herd)).length === 1)

  const ac = new AbortController()
  t.teardown(() => ac.abort())
  let following = false
  const follow = await shoalEvents(apiserver, ['--follow', '--action', 'tag.put'], {
    signal: ac.signal,
    onFollowing: () => {
      following = true
    },
  })
  await until('following', () => following)
  t.same(follow.out, [], 'no tag.put yet')
  await new ProxyClient(herd.urls.proxy).putTag('f-/x-a.txt:latest', c.digest)
  await until('the new event printed', () => follow.out.length === 1)
  t.match(follow.out[0], /tag\.put .*f-\/x-a\.txt:latest/)

  // The same data folder and API port: the follower resumes from its resourceVersion.
  await herd.stop()
  herd = await startHerd(herdConfig(dir, { apiserver: { server: { port } } }), { logger })
  await new ProxyClient(herd.urls.proxy).putTag('f-/y-b.txt:latest', c.digest)
  await until('the event after the restart printed', () => follow.out.length === 2)
  t.match(follow.out[1], /tag\.put .*f-\/y-b\.txt:latest/)
  ac.abort()
  t.equal(await follow.done, 0, 'ends cleanly when interrupted')
  t.equal(follow.out.length, 2, 'nothing printed twice')
})

t.test('retention: the herd prunes beyond maxEvents', async (t) => {
  const dir = await tempDir(t)
  const herd = await startHerd(
    herdConfig(dir, { events: { retention: { maxEvents: 3, pruneIntervalSeconds: 1 } } }),
    { logger },
  )
  t.teardown(() => herd.stop())
  const proxy = new ProxyClient(herd.urls.proxy)
  for (let i = 0; i < 6; i++) await push(proxy, blob(`retained ${i}`))
  await until('6 events recorded and pruned to the newest 3', async () => {
    const specs = await events(herd)
    return specs.length === 3 && specs[2]?.digest === blob('retained 5').digest.toString()
  })
  t.same(
    (await events(herd)).map((e) => e.digest),
    [3, 4, 5].map((i) => blob(`retained ${i}`).digest.toString()),
    'the oldest went first',
  )
})

/** An apiserver with the Event kind and a write token, on loopback; `url` stays valid after stop(). */
async function eventApi(t: Test, dir: string) {
  await writeFile(join(dir, 'api.token'), TOKEN, { mode: 0o600 })
  const api = new ApiServer(
    validateConfig(ApiServerConfigSchema, {
      server: { host: '127.0.0.1', port: 0 },
      store: { type: 'file', dir: join(dir, 'api') },
      auth: { tokens: [{ name: 'daemons', file: join(dir, 'api.token') }] },
    }),
    { logger, registry: new KindRegistry().register(EventKind) },
  )
  await api.start()
  t.teardown(() => api.stop())
  return { api, url: api.url, tokenFile: join(dir, 'api.token') }
}

const TOKEN = 'daemon-token-0123456789'

t.test('a standalone proxy with events: {apiserver} writes its events there, with its token', async (t) => {
  const dir = await tempDir(t)
  const herd = await startHerd(herdConfig(dir, { apiserver: { enabled: false } }), { logger })
  t.teardown(() => herd.stop())
  const { api, url, tokenFile } = await eventApi(t, dir)
  const proxyConfig = (events: Record<string, unknown>) =>
    validateConfig(ProxyConfigSchema, {
      server: { host: '127.0.0.1', port: 0 },
      origins: [new URL(herd.urls.origin).host],
      buildIndex: herd.urls.buildIndex,
      events,
    })
  const proxyServer = await startProxy(proxyConfig({ apiserver: new URL(url).host, tokenFile }), { logger })
  t.teardown(() => proxyServer.stop())
  const d = blob('standalone')
  await push(new ProxyClient(proxyServer.url, { actor: 'dave@ops' }), d)
  await until('the push event in the remote log', async () => {
    const list = await api.store.list(EventKind, { namespace: EVENTS_NAMESPACE })
    return list.items.length === 1
  })
  const [ev] = (await api.store.list(EventKind, { namespace: EVENTS_NAMESPACE })).items as EventResource[]
  t.match(ev?.spec, { action: 'push', actor: 'dave@ops', digest: d.digest.toString(), outcome: 'ok' })

  await t.rejects(
    startProxy(proxyConfig({ apiserver: url, tokenFile: join(dir, 'missing.token') }), { logger }),
    { code: 'CONFIG_INVALID' },
    'a token file that cannot be read fails the start',
  )
})

t.test('a recorder whose apiserver is down drops (counted) and never holds up a push', async (t) => {
  const dir = await tempDir(t)
  const herd = await startHerd(herdConfig(dir, { apiserver: { enabled: false } }), { logger })
  t.teardown(() => herd.stop())
  // An apiserver that was there and is gone: its address refuses connections.
  const { api, url, tokenFile } = await eventApi(t, dir)
  await api.stop()
  const proxyServer = await startProxy(
    validateConfig(ProxyConfigSchema, {
      server: { host: '127.0.0.1', port: 0 },
      origins: [new URL(herd.urls.origin).host],
      buildIndex: herd.urls.buildIndex,
      events: { apiserver: url, tokenFile, maxQueued: 2, timeoutMs: 1000 },
    }),
    { logger },
  )
  t.teardown(() => proxyServer.stop())
  const proxy = new ProxyClient(proxyServer.url)
  for (let i = 0; i < 3; i++)
    t.same((await push(proxy, blob(`unlogged ${i}`))).existed, false, `push ${i} done`)
  const metrics = await proxyServer.registry.metrics()
  t.match(
    metrics,
    /shoal_events_total\{result="dropped",component="proxy"\} 1/,
    'two queued, the third dropped',
  )
  t.match(metrics, /shoal_events_queued\{component="proxy"\} 2/)
  t.notMatch(metrics, /result="written"/)
})

t.test('a GC decision is an event: the blob of a removed tag deleted', async (t) => {
  const dir = await tempDir(t)
  const herd = await startHerd(herdConfig(dir, { buildIndex: { gc: { graceMs: 0, sweepIntervalMs: 50 } } }), {
    logger,
  })
  t.teardown(() => herd.stop())
  const proxy = new ProxyClient(herd.urls.proxy, { actor: 'bob@ops' })
  const d = blob('collected')
  await push(proxy, d)
  await proxy.putTag('g-/tmp-c.bin:latest', d.digest)
  await proxy.deleteTag('g-/tmp-c.bin:latest')
  await until('a gc event', async () => (await events(herd)).some((e) => e.action === 'gc'))
  const gc = (await events(herd)).find((e) => e.action === 'gc')
  t.match(gc, {
    subject: d.digest.toString(),
    digest: d.digest.toString(),
    outcome: 'ok',
    actor: 'build-index',
    details: { ns: 'default', decision: 'deleted' },
  })
  const listed = await shoalEvents(herd, ['--action', 'gc'])
  t.equal(await listed.done, 0)
  t.match(listed.out, [/gc .*ok .*sha256:[0-9a-f]{64} {2}by build-index on .*decision=deleted/])
})

t.test('a remove or tag put build-index never answered is recorded by the proxy', async (t) => {
  const dir = await tempDir(t)
  const herd = await startHerd(herdConfig(dir, { apiserver: { enabled: false } }), { logger })
  t.teardown(() => herd.stop())
  const got: EventInput[] = []
  const deadBuildIndex = new URL(herd.urls.buildIndex).host
  const proxyServer = await startProxy(
    validateConfig(ProxyConfigSchema, {
      server: { host: '127.0.0.1', port: 0 },
      origins: [new URL(herd.urls.origin).host],
      buildIndex: deadBuildIndex,
    }),
    { logger, events: { record: (e) => got.push(e) } },
  )
  t.teardown(() => proxyServer.stop())
  await herd.stop() // build-index (and everything else) gone
  const proxy = new ProxyClient(proxyServer.url, { actor: 'carol@ops' })
  await t.rejects(proxy.deleteTag('r-/d-f.csv:latest'), { code: 'UNAVAILABLE' })
  await t.rejects(proxy.putTag('r-/d-f.csv:latest', blob('x').digest), { code: 'UNAVAILABLE' })
  t.match(got, [
    { action: 'remove', subject: 'r-/d-f.csv:latest', tag: 'r-/d-f.csv:latest', actor: 'carol@ops' },
    { action: 'tag.put', subject: 'r-/d-f.csv:latest', digest: blob('x').digest.toString() },
  ])
  t.match(
    got.map((e) => (e.error as { code?: string }).code),
    ['UNAVAILABLE', 'UNAVAILABLE'],
  )
})
