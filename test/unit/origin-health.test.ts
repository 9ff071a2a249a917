/**
 * The ring's health checks and membership on a ManualClock: the state machine's thresholds,
 * flapping, probe timeouts, the gauge; owners walking past unhealthy members; DNS membership
 * through an injected resolver (and `localhost` through the real one); OriginCluster failing
 * over from one owner to the next. No real time passes except in the last DNS test.
 */
import { createHash } from 'node:crypto'
import t from 'tap'
import { ManualClock } from '../../lib/bandwidth/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest } from '../../lib/core/index.js'
import { ShoalError } from '../../lib/errors/index.js'
import { HashRing } from '../../lib/hashring/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { createRegistry } from '../../lib/metrics/index.js'
import { failsOver } from '../../lib/origin/client/cluster.js'
import { HealthChecker, type Probe } from '../../lib/origin/client/health.js'
import { type OriginClient, OriginCluster } from '../../lib/origin/client/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { DnsMembers, systemResolve } from '../../lib/origin/server/members.js'
import { OriginRing } from '../../lib/origin/server/ring.js'

const logger = silentLogger()
const settings = { intervalMs: 1000, timeoutMs: 200, failThreshold: 3, passThreshold: 2 }

/** A probe whose answer per member the test sets: true passes, false fails, 'hang' never answers. */
function scriptedProbe(): { probe: Probe; answer: Map<string, boolean | 'hang'>; calls: string[] } {
  const answer = new Map<string, boolean | 'hang'>()
  const calls: string[] = []
  const probe: Probe = (address) => {
    calls.push(address)
    const a = answer.get(address) ?? true
    if (a === 'hang') return new Promise(() => undefined)
    return a ? Promise.resolve() : Promise.reject(new ShoalError('UNAVAILABLE', `${address} refused`))
  }
  return { probe, answer, calls }
}

/** Moves the clock one interval and waits for the round it started. */
async function tick(clock: ManualClock, checker: HealthChecker, ms = settings.intervalMs): Promise<void> {
  clock.advance(ms)
  await checker.settled()
  await new Promise((r) => setImmediate(r))
}

function digestOf(text: string): Digest {
  return Digest.fromHex(createHash('sha256').update(text).digest('hex'))
}

t.test(
  'a member turns unhealthy after failThreshold failures and healthy after passThreshold passes',
  async (t) => {
    const clock = new ManualClock()
    const registry = createRegistry('test')
    const { probe, answer } = scriptedProbe()
    const checker = new HealthChecker({ ...settings, logger, registry, clock, probe, self: 'a:1' })
    checker.setMembers(['a:1', 'b:1', 'c:1'])
    checker.start()
    t.ok(checker.isHealthy('b:1'), 'members start healthy')

    answer.set('b:1', false)
    await tick(clock, checker)
    await tick(clock, checker)
    t.ok(checker.isHealthy('b:1'), 'two failures are not enough')
    await tick(clock, checker)
    t.notOk(
      checker.isHealthy('http://b:1/'),
      'the third failure makes it unhealthy (however the address is written)',
    )
    t.ok(checker.isHealthy('c:1'), 'the others stay healthy')
    t.ok(checker.isHealthy('a:1'), 'self is never probed and always healthy')
    t.match(
      checker.snapshot().find((m) => m.address === 'b:1'),
      { failures: 3, lastError: /refused/ },
    )

    const gauge = await registry.getSingleMetric('shoal_origin_member_healthy')?.get()
    const value = (m: string) => gauge?.values.find((v) => v.labels.member === m)?.value
    t.equal(value('b:1'), 0, 'the gauge says unhealthy')
    t.equal(value('c:1'), 1)

    answer.set('b:1', true)
    await tick(clock, checker)
    t.notOk(checker.isHealthy('b:1'), 'one pass is not enough')
    await tick(clock, checker)
    t.ok(checker.isHealthy('b:1'), 'two passes make it healthy again')
    const transitions = await registry.getSingleMetric('shoal_origin_member_transitions_total')?.get()
    t.same(transitions?.values.map((v) => [v.labels.to, v.value]).sort(), [
      ['healthy', 1],
      ['unhealthy', 1],
    ])
    checker.stop()
    t.equal(clock.pendingTimers, 0, 'stop leaves no timer')
  },
)

t.test('flapping: results that alternate never reach a threshold', async (t) => {
  const checker = new HealthChecker({ ...settings, logger })
  checker.setMembers(['b:1'])
  for (let i = 0; i < 10; i++) {
    t.notOk(checker.record('b:1', i % 3 !== 2), 'no transition') // fail, fail, pass, ...
  }
  t.ok(checker.isHealthy('b:1'))
  for (let i = 0; i < 3; i++) checker.record('b:1', false)
  t.notOk(checker.isHealthy('b:1'))
  for (let i = 0; i < 10; i++) t.notOk(checker.record('b:1', i % 2 === 0), 'pass, fail, ...: stays down')
  t.notOk(checker.isHealthy('b:1'))
  t.notOk(checker.record('unknown:1', false), 'an unknown member is ignored')
  t.ok(checker.isHealthy('unknown:1'), 'and counts as healthy')
})

t.test('a probe that does not answer within timeoutMs is a failure', async (t) => {
  const clock = new ManualClock()
  const { probe, answer } = scriptedProbe()
  const checker = new HealthChecker({ ...settings, failThreshold: 1, logger, clock, probe })
  checker.setMembers(['b:1'])
  answer.set('b:1', 'hang')
  checker.start()
  clock.advance(settings.intervalMs)
  t.ok(checker.isHealthy('b:1'), 'still waiting for the answer')
  await tick(clock, checker, settings.timeoutMs)
  t.notOk(checker.isHealthy('b:1'))
  t.match(checker.snapshot()[0], { lastError: /did not answer its health check within 200 ms/ })
  checker.stop()
})

t.test('setMembers adds new members healthy and forgets removed ones', async (t) => {
  const registry = createRegistry('test')
  const checker = new HealthChecker({ ...settings, logger, registry })
  checker.setMembers(['a:1', 'b:1'])
  for (let i = 0; i < 3; i++) checker.record('b:1', false)
  checker.setMembers(['b:1', 'c:1'])
  t.same(
    checker.snapshot().map((m) => [m.address, m.healthy]),
    [
      ['b:1', false],
      ['c:1', true],
    ],
  )
  const gauge = await registry.getSingleMetric('shoal_origin_member_healthy')?.get()
  t.same(gauge?.values.map((v) => v.labels.member).sort(), ['b:1', 'c:1'], 'the gone member has no gauge')
})

t.test('owners: the first `replicas` healthy members along the ring', async (t) => {
  const nodes = ['o1:1', 'o2:1', 'o3:1', 'o4:1']
  const ring = new OriginRing({ nodes, replicas: 2, healthCheck: settings }, 'o1:1', { logger })
  const plain = new HashRing(nodes)
  let checked = 0
  for (let i = 0; i < 50; i++) {
    const d = digestOf(`blob-${i}`)
    const order = plain.owners(d, 4)
    t.same(ring.owners(d), order.slice(0, 2), 'all healthy: the ring owners')
    const down = order[0] === 'o1:1' ? (order[1] as string) : (order[0] as string)
    for (let k = 0; k < 3; k++) ring.health.record(down, false)
    const expected = order.filter((m) => m !== down).slice(0, 2)
    t.same(ring.owners(d), expected, 'an unhealthy owner is passed over for the next along the ring')
    for (let k = 0; k < 2; k++) ring.health.record(down, true)
    t.same(ring.owners(d), order.slice(0, 2), 'named again once healthy')
    checked++
  }
  t.equal(checked, 50)

  for (const m of ['o2:1', 'o3:1', 'o4:1']) for (let k = 0; k < 3; k++) ring.health.record(m, false)
  t.same(ring.owners(digestOf('x')), ['o1:1'], 'fewer healthy members than replicas: every healthy one')
})

t.test('config: hashring.dns or nodes, not both; replicas and health check defaults', async (t) => {
  const c = validateConfig(OriginConfigSchema, {})
  t.equal(c.hashring.replicas, 1)
  t.same(c.hashring.healthCheck, { intervalMs: 5000, timeoutMs: 2000, failThreshold: 3, passThreshold: 2 })
  const d = validateConfig(OriginConfigSchema, { hashring: { dns: { name: 'origins.svc', port: 15002 } } })
  t.same(d.hashring.dns, { name: 'origins.svc', port: 15002, refreshSeconds: 30 })
  t.throws(
    () => validateConfig(OriginConfigSchema, { hashring: { nodes: ['a:1'], dns: { name: 'x', port: 1 } } }),
    { code: 'CONFIG_INVALID', message: /hashring.nodes or hashring.dns, not both/ },
  )
})

t.test('DNS membership: resolved at start and on every refresh; the ring follows changes', async (t) => {
  const clock = new ManualClock()
  let answer: string[] | Error = ['10.0.0.2', '10.0.0.1', '10.0.0.1']
  const names: string[] = []
  const ring = new OriginRing(
    {
      nodes: [],
      dns: { name: 'origins.svc', port: 15002, refreshSeconds: 10 },
      replicas: 1,
      healthCheck: settings,
    },
    '10.0.0.1:15002',
    {
      logger,
      clock,
      probe: async () => undefined,
      resolve: async (name) => {
        names.push(name)
        if (answer instanceof Error) throw answer
        return answer
      },
    },
  )
  t.same(ring.nodes, ['10.0.0.1:15002'], 'before the first resolution: this origin alone')
  await ring.start()
  t.same(names, ['origins.svc'])
  t.same(ring.nodes, ['10.0.0.1:15002', '10.0.0.2:15002'], 'sorted, unique, with the port')
  t.same(
    ring.health.snapshot().map((m) => m.address),
    ['10.0.0.1:15002', '10.0.0.2:15002'],
    'the members are health-checked',
  )

  const refreshed = async () => {
    clock.advance(10_000)
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
  }
  answer = ['10.0.0.1', '10.0.0.3', 'fd00::4']
  await refreshed()
  t.same(ring.nodes, ['10.0.0.1:15002', '10.0.0.3:15002', '[fd00::4]:15002'], 'added and removed members')

  answer = new Error('SERVFAIL')
  await refreshed()
  t.same(
    ring.nodes,
    ['10.0.0.1:15002', '10.0.0.3:15002', '[fd00::4]:15002'],
    'a failed resolution keeps the ring',
  )
  answer = []
  await refreshed()
  t.equal(ring.nodes.length, 3, 'so does an empty answer')
  t.equal(names.length, 4, 'resolved once per refresh')
  ring.stop()
  t.equal(clock.pendingTimers, 0)
})

t.test('DNS membership: the change callback names what was added and removed', async (t) => {
  const changes: unknown[] = []
  let answer = ['10.0.0.1']
  const dns = new DnsMembers(
    { name: 'n', port: 1, refreshSeconds: 1 },
    { logger, resolve: async () => answer, onChange: (c) => changes.push(c), clock: new ManualClock() },
  )
  t.ok(await dns.refresh())
  answer = ['10.0.0.1']
  t.ok(await dns.refresh())
  answer = ['10.0.0.2']
  await dns.refresh()
  t.same(changes, [
    { members: ['10.0.0.1:1'], added: ['10.0.0.1:1'], removed: [] },
    { members: ['10.0.0.2:1'], added: ['10.0.0.2:1'], removed: ['10.0.0.1:1'] },
  ])
})

t.test('DNS membership through the real resolver: localhost', async (t) => {
  const addresses = await systemResolve('localhost')
  t.ok(addresses.length > 0)
  t.ok(
    addresses.every((a) => a === '::1' || a.startsWith('127.')),
    `localhost is loopback (${addresses.join(', ')})`,
  )
  const ring = new OriginRing(
    {
      nodes: [],
      dns: { name: 'localhost', port: 15002, refreshSeconds: 60 },
      replicas: 1,
      healthCheck: settings,
    },
    '127.0.0.1:15002',
    { logger, probe: async () => undefined },
  )
  await ring.start()
  t.teardown(() => ring.stop())
  t.ok(
    ring.nodes.length > 0 && ring.nodes.every((n) => /^(127\.[\d.]+|\[::1\]):15002$/.test(n)),
    ring.nodes.join(),
  )
})

/** A fake origin client: `locations` answers `owners`; `calls` records who was asked what. */
function fakeCluster(owners: string[], fail: Record<string, ShoalError>) {
  const calls: string[] = []
  const factory = (address: string) =>
    ({
      baseUrl: `http://${address}`,
      locations: async () => owners,
      stat: async () => {
        calls.push(address)
        const err = fail[address]
        if (err) throw err
        return { size: 1, pending: false }
      },
    }) as unknown as OriginClient
  return { calls, factory }
}

t.test(
  'OriginCluster.withOwner: tries owners in order, moving on only for refused, timeout and 5xx',
  async (t) => {
    const d = digestOf('y')
    const down = new ShoalError('UNAVAILABLE', 'cannot reach the origin (ECONNREFUSED)')
    let f = fakeCluster(['o1:1', 'o2:1'], { 'o1:1': down })
    let cluster = new OriginCluster(['o1:1', 'o2:1', 'o3:1'], f.factory)
    t.same(await cluster.withOwner(d, (o) => o.stat('default', d)), { size: 1, pending: false })
    t.same(f.calls, ['o1:1', 'o2:1'])

    f = fakeCluster(['o1:1'], { 'o1:1': new ShoalError('INTERNAL', 'boom') })
    cluster = new OriginCluster(['o1:1', 'o3:1'], f.factory)
    await cluster.withOwner(d, (o) => o.stat('default', d))
    t.same(f.calls, ['o1:1', 'o3:1'], 'past the owners: the other configured origins, as a last resort')

    f = fakeCluster(['o1:1', 'o2:1'], { 'o1:1': new ShoalError('BLOB_NOT_FOUND', 'no') })
    cluster = new OriginCluster(['o1:1'], f.factory)
    await t.rejects(
      cluster.withOwner(d, (o) => o.stat('default', d)),
      { code: 'BLOB_NOT_FOUND' },
    )
    t.same(f.calls, ['o1:1'], 'a 4xx answer is the answer')

    f = fakeCluster(['o1:1', 'o2:1'], { 'o1:1': down })
    cluster = new OriginCluster(['o1:1'], f.factory)
    await t.rejects(
      cluster.withOwner(d, (o) => o.stat('default', d), { retryable: () => false }),
      down,
    )
    t.same(f.calls, ['o1:1'], 'not retried when the caller says it cannot be')

    f = fakeCluster(['o1:1', 'o2:1'], { 'o1:1': down, 'o2:1': down })
    cluster = new OriginCluster(['o1:1'], f.factory)
    await t.rejects(
      cluster.withOwner(d, (o) => o.stat('default', d)),
      { code: 'UNAVAILABLE' },
    )

    t.ok(failsOver(new ShoalError('TIMEOUT', 'slow')))
    t.ok(failsOver(new ShoalError('UPSTREAM_REFUSED', 'answered 500')))
    t.notOk(failsOver(new ShoalError('ABORTED', 'cancelled')))
    t.notOk(failsOver(new Error('not ours')))
  },
)

t.test('OriginCluster: owners its own checks find unhealthy are tried last', async (t) => {
  const d = digestOf('z')
  const f = fakeCluster(['o1:1', 'o2:1'], {})
  const cluster = new OriginCluster(['o1:1', 'o2:1'], f.factory, { health: settings, logger })
  for (let k = 0; k < 3; k++) cluster.health?.record('o1:1', false)
  t.same(
    (await cluster.owners(d)).map((o) => o.baseUrl),
    ['http://o2:1', 'http://o1:1'],
  )
  await cluster.withOwner(d, (o) => o.stat('default', d))
  t.same(f.calls, ['o2:1'])
})

t.test('OriginCluster: owners the origins stop naming are forgotten, configured ones never', async (t) => {
  const d = digestOf('w')
  const clock = new ManualClock()
  let owners = ['o1:1', 'o9:1']
  const factory = (address: string) =>
    ({ baseUrl: `http://${address}`, locations: async () => owners }) as unknown as OriginClient
  const cluster = new OriginCluster(['o1:1'], factory, {
    health: settings,
    logger,
    clock,
    forgetAfterMs: 1000,
  })
  await cluster.owners(d)
  t.equal(cluster.known, 2, 'an owner the origins name is known (and health-checked)')
  t.ok(cluster.health?.snapshot().some((m) => m.address === 'o9:1'))
  owners = ['o1:1']
  clock.advance(600)
  await cluster.owners(d)
  t.equal(cluster.known, 2, 'not forgotten before forgetAfterMs')
  clock.advance(600)
  await cluster.owners(d)
  t.equal(cluster.known, 1, 'forgotten once not named for forgetAfterMs')
  t.same(
    cluster.health?.snapshot().map((m) => m.address),
    ['o1:1'],
    'and no longer health-checked; the configured origin stays',
  )
  owners = ['o9:1']
  t.same(
    (await cluster.owners(d)).map((o) => o.baseUrl),
    ['http://o9:1'],
    'named again: known again',
  )
})
