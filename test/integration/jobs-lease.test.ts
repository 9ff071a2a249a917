/**
 * Leader election of the job controller between two "herds" (two resource APIs) sharing one
 * store on a real redis-server: only the lease holder runs its controller and acts on jobs;
 * when it stops (releasing the lease) the other takes over at its next attempt; when it can no
 * longer renew (its API gone) it stops its controller and the other takes over once the lease
 * has not moved for its duration.
 */
import t, { type Test } from 'tap'
import { ResourceClient } from '../../lib/apiserver/client/index.js'
import { KindRegistry } from '../../lib/apiserver/registry.js'
import { ApiServer, ApiServerConfigSchema } from '../../lib/apiserver/server/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { JOB_CONTROLLER_LEASE, jobControllerPart } from '../../lib/jobs/herd.js'
import { DistributionKind, DistributionTaskKind } from '../../lib/jobs/kinds.js'
import { registerJobKinds } from '../../lib/jobs/register.js'
import type { JobTransition } from '../../lib/jobs/summary.js'
import { LEASE_NAMESPACE, type Lease, LeaseKind } from '../../lib/lease/index.js'
import type { Service } from '../../lib/lifecycle/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { startTestRedis } from '../helpers/redis.js'

const NS = 'default'

async function until<T>(
  what: string,
  f: () => Promise<T | undefined> | T | undefined,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await f()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

async function herd(t: Test, redisUrl: string, name: string) {
  const api = new ApiServer(
    validateConfig(ApiServerConfigSchema, {
      server: { host: '127.0.0.1', port: 0 },
      store: { type: 'redis', redis: { url: redisUrl, keyPrefix: 'lease-test:' } },
    }),
    { logger: silentLogger(), registry: registerJobKinds(new KindRegistry()) },
  )
  await api.start()
  t.teardown(() => api.stop())
  const transitions: JobTransition[] = []
  const jobs = jobControllerPart(api, {
    logger: silentLogger(),
    retryMs: 100,
    onTransition: (x) => transitions.push(x),
    leaderElection: { identity: name, leaseDurationSeconds: 2, renewEveryMs: 200, retryEveryMs: 200 },
  })
  const part = (await (jobs.part as () => Service)()) as Service
  t.teardown(() => part.stop())
  return { api, jobs, part, transitions, name }
}

t.test('two herds on one Redis store: one controller acts; the other takes over when it stops', async (t) => {
  const redis = await startTestRedis(t)
  const a = await herd(t, redis.url, 'herd-a')
  const b = await herd(t, redis.url, 'herd-b')
  await a.part.start()
  await b.part.start()
  t.ok(a.jobs.controller(), 'the first herd took the lease at start and runs its controller')
  t.equal(b.jobs.controller(), undefined, 'the second stands by')

  const leases = new ResourceClient<never, never>(a.api.url, LeaseKind)
  const holder = async () =>
    ((await leases.get(LEASE_NAMESPACE, JOB_CONTROLLER_LEASE)) as unknown as Lease).spec.holderIdentity
  t.equal(await holder(), 'herd-a')

  // A job created through B's API is acted on by A's controller only.
  const dists = new ResourceClient(b.api.url, DistributionKind)
  const tasks = new ResourceClient(b.api.url, DistributionTaskKind)
  await dists.create(NS, {
    metadata: { name: 'j1' },
    spec: { source: { tag: 'h-/d-f.txt:v1' }, targets: [{ host: 'h10', path: '/data' }] } as never,
  })
  await until('j1 task', () => tasks.get(NS, 'j1-t0').catch(() => undefined))
  await until(
    'j1 summarised',
    async () => ((await dists.get(NS, 'j1')) as { status?: { phase?: string } }).status?.phase,
  )
  // Several renew periods later B has still done nothing.
  await until('A renewed a few times', async () => {
    const l = (await leases.get(LEASE_NAMESPACE, JOB_CONTROLLER_LEASE)) as unknown as Lease
    return Date.parse(l.spec.renewTime ?? '') - Date.parse(l.spec.acquireTime ?? '') >= 1000
  })
  t.ok(a.transitions.length > 0, 'A recorded the transitions')
  t.equal(b.transitions.length, 0, 'B did nothing')
  t.equal(b.jobs.controller(), undefined, 'and still stands by')

  // A stops (releases the lease): B takes over at its next attempt and acts on a new job.
  await a.part.stop()
  t.equal(a.jobs.controller(), undefined, 'A runs no controller once stopped')
  await until('B leads', () => b.jobs.controller())
  t.equal(await holder(), 'herd-b')
  await dists.create(NS, {
    metadata: { name: 'j2' },
    spec: { source: { tag: 'h-/d-g.txt:v1' }, targets: [{ host: 'h11', path: '/data' }] } as never,
  })
  await until('j2 task', () => tasks.get(NS, 'j2-t0').catch(() => undefined))
  await until('B recorded j2', () => b.transitions.some((x) => JSON.stringify(x).includes('j2')))
  const lease = (await leases.get(LEASE_NAMESPACE, JOB_CONTROLLER_LEASE)) as unknown as Lease
  t.equal(lease.spec.leaseTransitions, 1, 'the lease changed hands once')
})

t.test(
  'a leader that cannot renew stops its controller; the other takes over after the lease duration',
  async (t) => {
    const redis = await startTestRedis(t)
    const a = await herd(t, redis.url, 'herd-a')
    const b = await herd(t, redis.url, 'herd-b')
    await a.part.start()
    await b.part.start()
    t.ok(a.jobs.controller(), 'A leads')
    // A's API goes away: its renewals fail. It steps down within its renew deadline (4/3 s)...
    await a.api.stop()
    await until('A stepped down', () => a.jobs.controller() === undefined)
    // ...and B, having seen the lease unchanged for 2 s, takes it over.
    await until('B leads', () => b.jobs.controller())
    const leases = new ResourceClient<never, never>(b.api.url, LeaseKind)
    const lease = (await leases.get(LEASE_NAMESPACE, JOB_CONTROLLER_LEASE)) as unknown as Lease
    t.equal(lease.spec.holderIdentity, 'herd-b')
    t.equal(a.jobs.election()?.isLeader, false, 'A knows it is not the leader')
  },
)
