/**
 * The resource API's two kind hooks, on a test kind: `admitDelete` refuses a delete through the
 * API with the hook's error (and leaves the object), `scale` serves a /scale subresource (a Scale
 * object; PUT and PATCH write only the replica field; a bad count is 422; a read token cannot
 * write it; a kind without it answers 404).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { type KindDefinition, KindRegistry } from '../../lib/apiserver/registry.js'
import { ApiServer, ApiServerConfigSchema } from '../../lib/apiserver/server/index.js'
import { validateConfig, z } from '../../lib/config/index.js'
import { ShoalError } from '../../lib/errors/index.js'
import { HttpClient } from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { Widget } from '../helpers/resources.js'

const Pool: KindDefinition = {
  group: 'test.shoal.io',
  version: 'v1',
  kind: 'Pool',
  plural: 'pools',
  spec: z.strictObject({ size: z.number().int().min(0).default(1), note: z.string().optional() }),
  status: z.strictObject({ members: z.number().int().min(0) }),
  admitDelete: (o) => {
    if (o.metadata.labels.locked === 'yes')
      throw new ShoalError('FORBIDDEN', `pool ${o.metadata.name} is locked`)
  },
  scale: {
    specReplicasPath: 'spec.size',
    statusReplicasPath: 'status.members',
    selector: (o) => `pool=${o.metadata.name}`,
  },
}

const dir = await mkdtemp(join(tmpdir(), 'shoal-admission-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
await writeFile(join(dir, 'write.token'), 'w'.repeat(32), { mode: 0o600 })
await writeFile(join(dir, 'read.token'), 'r'.repeat(32), { mode: 0o600 })
const api = new ApiServer(
  validateConfig(ApiServerConfigSchema, {
    server: { host: '127.0.0.1', port: 0 },
    store: { type: 'file', dir: join(dir, 'store') },
    auth: {
      tokens: [
        { name: 'admin', file: join(dir, 'write.token') },
        { name: 'viewer', file: join(dir, 'read.token'), access: 'read' },
      ],
    },
  }),
  { logger: silentLogger(), registry: new KindRegistry().register(Widget).register(Pool) },
)
await api.start()
t.teardown(() => api.stop())
const http = new HttpClient(api.url, { name: 'apiserver' })
const base = '/apis/test.shoal.io/v1/namespaces/ns'
interface Answer {
  kind?: string
  apiVersion?: string
  message?: string
  spec: { replicas?: number; size?: number; note?: string }
  status?: unknown
}
const call = async (method: string, path: string, body?: unknown, token = 'w'.repeat(32)) => {
  const res = await http.request(method, path, {
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
    accept: [400, 403, 404, 422],
  })
  return { status: res.statusCode, body: (await res.body.json()) as Answer }
}

t.test('admitDelete refuses with its own error and keeps the object', async (t) => {
  await call('POST', `${base}/pools`, { metadata: { name: 'p1', labels: { locked: 'yes' } }, spec: {} })
  const refused = await call('DELETE', `${base}/pools/p1`)
  t.equal(refused.status, 403)
  t.match(refused.body.message, /locked/)
  t.equal((await call('GET', `${base}/pools/p1`)).status, 200, 'still there')
  const unlocked = await http.request('PATCH', `${base}/pools/p1`, {
    headers: { authorization: `Bearer ${'w'.repeat(32)}`, 'content-type': 'application/merge-patch+json' },
    body: JSON.stringify({ metadata: { labels: { locked: null } } }),
  })
  await unlocked.body.dump()
  t.equal((await call('DELETE', `${base}/pools/p1`)).status, 200, 'deleted once the hook lets it')
})

t.test('the scale subresource', async (t) => {
  await call('POST', `${base}/pools`, { metadata: { name: 'p2' }, spec: { size: 2, note: 'kept' } })
  const got = await call('GET', `${base}/pools/p2/scale`)
  t.equal(got.status, 200)
  t.same(
    { kind: got.body.kind, apiVersion: got.body.apiVersion, spec: got.body.spec, status: got.body.status },
    {
      kind: 'Scale',
      apiVersion: 'autoscaling/v1',
      spec: { replicas: 2 },
      status: { replicas: 0, selector: 'pool=p2' },
    },
  )
  const put = await call('PUT', `${base}/pools/p2/scale`, { spec: { replicas: 7 } })
  t.equal(put.body.spec.replicas, 7)
  const obj = await call('GET', `${base}/pools/p2`)
  t.same(obj.body.spec, { size: 7, note: 'kept' }, 'only the replica field changed')
  const patched = await call('PATCH', `${base}/pools/p2/scale`, { spec: { replicas: 0 } })
  t.equal(patched.body.spec.replicas, 0)
  for (const bad of [-1, 1.5, '3', null]) {
    const r = await call('PUT', `${base}/pools/p2/scale`, { spec: { replicas: bad } })
    t.equal(r.status, 422, `replicas ${JSON.stringify(bad)} refused`)
  }
  const viewer = await call('PUT', `${base}/pools/p2/scale`, { spec: { replicas: 1 } }, 'r'.repeat(32))
  t.equal(viewer.status, 403, 'a read token cannot scale')
  t.equal(
    (await call('GET', `${base}/pools/p2/scale`, undefined, 'r'.repeat(32))).status,
    200,
    'but can read it',
  )
  await call('POST', `${base}/widgets`, { metadata: { name: 'w1' }, spec: { host: 'h' } })
  t.equal((await call('GET', `${base}/widgets/w1/scale`)).status, 404, 'no scale on a kind without one')
  t.equal((await call('GET', `${base}/pools/nope/scale`)).status, 404)
})
