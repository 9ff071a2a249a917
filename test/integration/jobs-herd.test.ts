/**
 * The herd serves the job kinds and runs the job controller next to its resource API (the
 * controller survives a herd restart and converges); without configured tokens the API takes
 * writes from loopback clients only, and names the config key when it refuses one.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ResourceClient } from '../../lib/apiserver/client/index.js'
import { KindRegistry } from '../../lib/apiserver/registry.js'
import { ApiServer, ApiServerConfigSchema } from '../../lib/apiserver/server/index.js'
import { isLoopback } from '../../lib/auth/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { EVENTS_NAMESPACE, EventKind, type EventSpecT } from '../../lib/events/kind.js'
import { HerdConfigSchema } from '../../lib/herd/config.js'
import { startHerd } from '../../lib/herd/index.js'
import { loopbackUrl } from '../../lib/jobs/herd.js'
import {
  DistributionKind,
  DistributionTaskKind,
  type TaskSpecT,
  type TaskStatusT,
} from '../../lib/jobs/kinds.js'
import { registerJobKinds } from '../../lib/jobs/register.js'
import type { JobTransition } from '../../lib/jobs/summary.js'
import { silentLogger } from '../../lib/log/index.js'
import { until } from '../helpers/jobs.js'

t.test('the herd runs the job controller; a restart converges', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-jobs-herd-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const seen: JobTransition[] = []
  const start = () =>
    startHerd(
      validateConfig(HerdConfigSchema, {
        dataDir: join(dir, 'herd'),
        bindHost: '127.0.0.1',
        basePort: 0,
        log: { level: 'silent' },
      }),
      { logger: silentLogger(), jobs: { onTransition: (x) => seen.push(x) } },
    )
  let herd = await start()
  t.teardown(() => herd.stop())
  t.ok(herd.jobs, 'the controller runs with the API')
  const url = herd.urls.apiserver as string
  const dists = new ResourceClient(url, DistributionKind)
  await dists.create('default', {
    metadata: { name: 'h1' },
    spec: { source: { host: 'src', path: '/data/f.txt' }, targets: [{ host: 'dst', path: '/in' }] } as never,
  })
  const tasks = new ResourceClient<TaskSpecT, TaskStatusT>(url, DistributionTaskKind)
  const push = await until('push task', () => tasks.get('default', 'h1-push'))
  await until('summarised', async () => (await dists.get('default', 'h1')).status !== undefined)

  await herd.stop()
  herd = await start()
  const url2 = herd.urls.apiserver as string
  const tasks2 = new ResourceClient<TaskSpecT, TaskStatusT>(url2, DistributionTaskKind)
  await tasks2.updateStatus('default', {
    metadata: { name: 'h1-push' },
    spec: push.spec,
    status: {
      phase: 'Succeeded',
      observedGeneration: push.metadata.generation,
      attempts: 1,
      bytes: 1,
      seconds: 0,
    },
  })
  const pull = await until('pull after restart', () => tasks2.get('default', 'h1-t0'))
  t.equal(pull.spec.tag, push.spec.tag)
  // The summary (and its transitions) is written once the pull exists: wait for it.
  await until('the transition seam is called', () =>
    seen.some((x) => x.subject === 'push' && x.to === 'Succeeded'),
  )
  t.pass('the transition seam is called')
  // ...and the herd records the same transitions in its event log (shoal events --job h1).
  const events = new ResourceClient<EventSpecT>(url2, EventKind)
  const ev = await until('the push success in the event log', async () => {
    const list = await events.list(EVENTS_NAMESPACE, { fieldSelector: 'spec.job=h1' })
    return list.items.find((e) => e.spec.action === 'task.succeeded')
  })
  t.equal(ev.spec.outcome, 'ok')
  t.equal(ev.spec.subject, 'h1-push', 'the event names the task')
})

/** A non-loopback IPv4 address of this machine, if it has one. */
function externalAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  return undefined
}

const ext = externalAddress()
const noExternal = ext === undefined && 'this machine has no non-loopback IPv4 address'

t.test(
  'without tokens, writes only from loopback; tokens open them to the network',
  { skip: noExternal },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-jobs-auth-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const token = 'a'.repeat(24)
    await writeFile(join(dir, 'admin.token'), token)
    const serve = async (auth: Record<string, unknown>) => {
      const api = new ApiServer(
        validateConfig(ApiServerConfigSchema, {
          server: { host: '0.0.0.0', port: 0 },
          store: { type: 'file', dir: join(dir, `store-${Object.keys(auth).length}`) },
          auth,
        }),
        { logger: silentLogger(), registry: registerJobKinds(new KindRegistry()) },
      )
      await api.start()
      t.teardown(() => api.stop())
      return api
    }
    const job = (name: string) => ({
      metadata: { name },
      spec: { source: { tag: 'h-/d-f:v1' }, targets: [{ host: 'x', path: '/d' }] } as never,
    })
    const open = await serve({})
    const port = new URL(open.url).port
    const remote = new ResourceClient(`http://${ext}:${port}`, DistributionKind)
    await t.rejects(remote.create('default', job('r1')), {
      code: 'FORBIDDEN',
      message:
        /writes from .* are refused: no token is configured \(apiserver\.auth\.tokens in the herd config\)/,
    })
    t.ok((await remote.list('default')).items, 'reads stay open')
    await new ResourceClient(loopbackUrl(open.url), DistributionKind).create('default', job('l1'))
    await new ResourceClient(`http://${ext}:${port}`, DistributionKind, { token: open.internalToken }).create(
      'default',
      job('i1'),
    )

    const closed = await serve({ tokens: [{ name: 'admin', file: join(dir, 'admin.token') }] })
    const port2 = new URL(closed.url).port
    await t.rejects(
      new ResourceClient(loopbackUrl(closed.url), DistributionKind).create('default', job('l2')),
      {
        code: 'UNAUTHORIZED',
      },
    )
    await new ResourceClient(`http://${ext}:${port2}`, DistributionKind, { token }).create(
      'default',
      job('r2'),
    )
  },
)

t.test('isLoopback', async (t) => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) t.ok(isLoopback(a), a)
  for (const a of ['10.0.0.1', '::ffff:10.0.0.1', '128.0.0.1', 'fe80::1', '']) t.notOk(isLoopback(a), a)
})
