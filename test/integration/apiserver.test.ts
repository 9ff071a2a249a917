/**
 * The resource API over real HTTP: auth, routes and status codes, watch streams (resume after
 * the server ends a watch, relist on 410, a slow reader cut off, the watcher cap), and the
 * herd serving it with its data surviving a restart.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { ResourceClient } from '../../lib/apiserver/client/index.js'
import { KindRegistry } from '../../lib/apiserver/registry.js'
import { ApiServer, ApiServerConfigSchema } from '../../lib/apiserver/server/index.js'
import type { WatchEvent } from '../../lib/apiserver/types.js'
import { validateConfig } from '../../lib/config/index.js'
import { HerdConfigSchema } from '../../lib/herd/config.js'
import { startHerd } from '../../lib/herd/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { take, Widget, widget } from '../helpers/resources.js'

const WRITE = 'w'.repeat(20) + '-write-token'
const READ = 'r'.repeat(20) + '-read-token'

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`not true within ${ms} ms: ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function startApi(t: Test, over: Record<string, unknown> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-api-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'write.token'), `${WRITE}\n`, { mode: 0o600 })
  await writeFile(join(dir, 'read.token'), READ, { mode: 0o600 })
  const config = validateConfig(ApiServerConfigSchema, {
    server: { host: '127.0.0.1', port: 0 },
    store: { type: 'file', dir: join(dir, 'store'), historyEvents: 20 },
    auth: {
      tokens: [
        { name: 'admin', file: join(dir, 'write.token') },
        { name: 'viewer', file: join(dir, 'read.token'), access: 'read' },
      ],
    },
    ...over,
  })
  const api = new ApiServer(config, { logger: silentLogger(), registry: new KindRegistry().register(Widget) })
  await api.start()
  t.teardown(() => api.stop())
  return api
}

const path = '/apis/test.shoal.io/v1/namespaces/ns/widgets'

async function call(
  base: string,
  method: string,
  p: string,
  body?: unknown,
  token?: string,
  type = 'application/json',
) {
  const headers: Record<string, string> = {}
  if (token) headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers['content-type'] = type
  const res = await fetch(base + p, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : undefined }
}

t.test('routes, status codes and auth', async (t) => {
  const api = await startApi(t)
  const u = api.url
  t.match(await call(u, 'POST', path, widget('a')), { status: 401, body: { code: 'UNAUTHORIZED' } })
  t.match(await call(u, 'POST', path, widget('a'), 'wrong-token-wrong-token'), { status: 401 })
  t.match(await call(u, 'POST', path, widget('a'), READ), { status: 403, body: { code: 'FORBIDDEN' } })
  const created = await call(u, 'POST', path, widget('a', 'h1', { app: 'web' }), WRITE)
  t.equal(created.status, 201)
  t.match(await call(u, 'POST', path, widget('a'), WRITE), { status: 409, body: { code: 'ALREADY_EXISTS' } })
  t.match(await call(u, 'POST', path, widget('Bad'), WRITE), { status: 422, body: { code: 'INVALID' } })
  t.match(await call(u, 'POST', path, { metadata: { name: 'x' }, spec: { host: 5 } }, WRITE), { status: 422 })
  t.match(await call(u, 'GET', '/apis/test.shoal.io/v1/namespaces/ns/nothings'), { status: 404 })
  t.match(await call(u, 'GET', `${path}/zzz`), { status: 404, body: { code: 'NOT_FOUND' } })
  t.match(await call(u, 'GET', `${path}?labelSelector=app%20in%20(`), { status: 422 })
  await call(u, 'POST', path, widget('b', 'h2'), WRITE)
  const list = await call(u, 'GET', `${path}?labelSelector=app%3Dweb`)
  t.same(
    list.body.items.map((o: { metadata: { name: string } }) => o.metadata.name),
    ['a'],
  )
  t.ok(list.body.metadata.resourceVersion)
  t.same(
    (await call(u, 'GET', `/apis/test.shoal.io/v1/widgets?fieldSelector=spec.host%3Dh2`)).body.items.length,
    1,
  )
  const a = created.body
  t.match(await call(u, 'PUT', `${path}/a`, { ...a, spec: { host: 'h3' } }, WRITE), {
    status: 200,
    body: { metadata: { generation: 2 } },
  })
  t.match(await call(u, 'PUT', `${path}/a`, { ...a, spec: { host: 'h4' } }, WRITE), {
    status: 409,
    body: { code: 'CONFLICT' },
  })
  t.match(
    await call(u, 'PUT', `${path}/b`, { ...a, spec: { host: 'h4' } }, WRITE),
    { status: 422 },
    'name in body and path differ',
  )
  t.match(await call(u, 'PATCH', `${path}/a`, { spec: { size: 2 } }, WRITE, 'application/merge-patch+json'), {
    status: 200,
    body: { spec: { host: 'h3', size: 2 } },
  })
  t.match(await call(u, 'PATCH', `${path}/a`, { spec: {} }, WRITE, 'text/plain'), { status: 400 })
  t.match(
    await call(
      u,
      'PUT',
      `${path}/a/status`,
      { metadata: { name: 'a' }, status: { phase: 'Running' } },
      WRITE,
    ),
    {
      status: 200,
      body: { status: { phase: 'Running' }, metadata: { generation: 3 } },
    },
  )
  t.match(
    await call(
      u,
      'PATCH',
      `${path}/a`,
      { metadata: { finalizers: ['f'] } },
      WRITE,
      'application/merge-patch+json',
    ),
    { status: 200 },
  )
  t.match(await call(u, 'DELETE', `${path}/a`, undefined, WRITE), {
    status: 202,
    body: { metadata: { deletionTimestamp: /T/ } },
  })
  t.match(
    await call(
      u,
      'PATCH',
      `${path}/a`,
      { metadata: { finalizers: null } },
      WRITE,
      'application/merge-patch+json',
    ),
    { status: 200 },
  )
  t.match(await call(u, 'GET', `${path}/a`), { status: 404 })
  const b = (await call(u, 'GET', `${path}/b`)).body
  t.match(await call(u, 'DELETE', `${path}/b`, { preconditions: { resourceVersion: '1' } }, WRITE), {
    status: 409,
  })
  t.match(
    await call(
      u,
      'DELETE',
      `${path}/b`,
      { preconditions: { resourceVersion: b.metadata.resourceVersion } },
      WRITE,
    ),
    { status: 200 },
  )
  for (let i = 0; i < 25; i++) await call(u, 'POST', path, widget(`n${i}`), WRITE)
  t.match(
    await call(u, 'GET', `${path}?watch=true&resourceVersion=1`),
    { status: 410, body: { code: 'GONE' } },
    'too old: the history is 20',
  )
  t.match((await call(u, 'GET', '/apis')).body, { resources: [{ kind: 'Widget', plural: 'widgets' }] })
  const res = await fetch(`${u}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${WRITE}` },
    body: '{"metadata":',
  })
  t.equal(res.status, 400, 'not JSON')
})

t.test('watch over HTTP: ndjson, resume after the server ends it, relist after 410', async (t) => {
  const api = await startApi(t, { watch: { maxTimeoutSeconds: 1, heartbeatMs: 100 } })
  const client = new ResourceClient(api.url, Widget, { token: WRITE })
  const rv = (await client.list('ns')).metadata.resourceVersion
  const ac = new AbortController()
  t.teardown(() => ac.abort())
  let reconnects = 0
  const w = client.watch({
    namespace: 'ns',
    resourceVersion: rv,
    signal: ac.signal,
    retryMs: 10,
    onReconnect: () => reconnects++,
  })
  const names: string[] = []
  const reader = (async () => {
    for await (const ev of w) {
      if (ev.type === 'BOOKMARK') continue
      names.push(`${ev.type} ${ev.object.metadata.name}`)
      if (names.length === 12) return
    }
  })()
  for (let i = 0; i < 6; i++) {
    await client.create('ns', widget(`o${i}`))
    await until('the watch saw it', () => names.length >= i + 1)
    if (i === 2) await until('the server ended a watch (timeoutSeconds 1)', () => reconnects > 0)
  }
  for (let i = 0; i < 6; i++) await client.delete('ns', `o${i}`)
  await reader
  t.same(
    names,
    [...[0, 1, 2, 3, 4, 5].map((i) => `ADDED o${i}`), ...[0, 1, 2, 3, 4, 5].map((i) => `DELETED o${i}`)],
    'in order, none lost or repeated across reconnects',
  )
  t.ok(reconnects > 0)

  // A client that was away too long: 410, then a relist that says what changed.
  const stale = (await client.list('ns')).metadata.resourceVersion
  await client.create('ns', widget('keep'))
  for (let i = 0; i < 30; i++) await client.patch('ns', 'keep', { spec: { size: i + 1 } })
  const gone: string[] = []
  const w2 = client.watch({
    namespace: 'ns',
    resourceVersion: stale,
    signal: ac.signal,
    retryMs: 10,
    onReconnect: (e) => gone.push(e.code),
  })
  const [first] = await take(w2, 1)
  t.same(gone, ['GONE'])
  t.match(first, { type: 'ADDED', object: { metadata: { name: 'keep' }, spec: { size: 30 } } })
})

t.test('a watch client that does not read is cut off; watches are capped', async (t) => {
  const api = await startApi(t, {
    store: {
      type: 'file',
      dir: join(await mkdtemp(join(tmpdir(), 'shoal-api-slow-')), 's'),
      historyEvents: 1000,
    },
    watch: { slowWatcherMs: 200, maxWatchers: 2, heartbeatMs: 50 },
  })
  const client = new ResourceClient(api.url, Widget, { token: WRITE })
  const big = 'x'.repeat(200_000)
  for (let i = 0; i < 60; i++) await client.create('ns', widget(`big${i}`, 'h', {}, { annotations: { big } }))
  const { port } = new URL(api.url)
  const sock = connect(Number(port), '127.0.0.1')
  t.teardown(() => sock.destroy())
  sock.pause() // never reads: 12 MB cannot all fit in the socket buffers
  sock.write(`GET ${path}?watch=true&resourceVersion=0 HTTP/1.1\r\nhost: x\r\n\r\n`)
  await until('the watch is open', () => api.activeWatchers === 1)
  const ev: WatchEvent[] = []
  const second = new ResourceClient(api.url, Widget).watch({
    namespace: 'ns',
    resourceVersion: '60',
    signal: AbortSignal.timeout(20_000),
  })
  const reading = (async () => {
    for await (const e of second) {
      ev.push(e)
      if (ev.length >= 1) return
    }
  })()
  await until('the second watch is open', () => api.activeWatchers === 2)
  const third = await call(api.url, 'GET', `${path}?watch=true&resourceVersion=60`)
  t.equal(third.status, 429, 'over watch.maxWatchers')
  await until('the slow watcher was cut off', () => api.activeWatchers === 1)
  await reading
  t.equal(ev[0]?.type, 'BOOKMARK', 'the reading watcher is unaffected')
})

t.test('the herd serves the API, and its file store survives a restart', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-api-herd-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const config = validateConfig(HerdConfigSchema, {
    dataDir: join(dir, 'herd'),
    bindHost: '127.0.0.1',
    basePort: 0,
    log: { level: 'silent' },
  })
  const registry = () => new KindRegistry().register(Widget)
  let herd = await startHerd(config, { logger: silentLogger(), registry: registry() })
  t.teardown(() => herd.stop())
  const url = herd.urls.apiserver as string
  t.ok(url)
  t.equal((await fetch(`${url}/readiness`)).status, 200)
  const created = await new ResourceClient(url, Widget).create('default', widget('kept', 'h1', { a: 'b' }))
  await herd.stop()
  herd = await startHerd(config, { logger: silentLogger(), registry: registry() })
  const again = await new ResourceClient(herd.urls.apiserver as string, Widget).get('default', 'kept')
  t.same(again, created)
  const off = validateConfig(HerdConfigSchema, {
    ...config,
    dataDir: join(dir, 'herd2'),
    apiserver: { enabled: false },
  })
  const plain = await startHerd(off, { logger: silentLogger() })
  t.teardown(() => plain.stop())
  t.equal(plain.urls.apiserver, undefined)
  t.equal(plain.apiserver, undefined)
})
