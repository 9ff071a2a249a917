/**
 * The agent's jobs pieces on their own: the config keys and their defaults, the roots rules on
 * real folders, and the status sink's retries (a fake resource client: 409s, an apiserver that
 * is down, a newer status replacing one being retried, a task re-created under the same name).
 */
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { isInside, realDestination, realSource } from '../../lib/agent/jobs/roots.js'
import { StatusSink } from '../../lib/agent/jobs/status.js'
import { IngressCaps, parseIngressCap } from '../../lib/agent/server/ingress-caps.js'
import type { ResourceClient } from '../../lib/apiserver/client/index.js'
import { loadConfig, validateConfig } from '../../lib/config/index.js'
import { Digest, InfoHash } from '../../lib/core/index.js'
import { ShoalError } from '../../lib/errors/index.js'
import type { DistributionTask, TaskSpecT, TaskStatusT } from '../../lib/jobs/kinds.js'
import { silentLogger } from '../../lib/log/index.js'

t.test('config: jobs off by default, hostName the OS host name, strict keys', async (t) => {
  const c = validateConfig(AgentConfigSchema, {})
  t.equal(c.hostName, hostname())
  t.same(c.jobs, {
    roots: [],
    proxy: '127.0.0.1:15000',
    flag: { suffix: '.flag', content: 'empty' },
    bandwidthClasses: {},
    concurrency: 2,
    progressSeconds: 5,
    watchSilenceSeconds: 60,
  })
  t.equal(c.jobs.apiserver, undefined, 'no apiserver: no worker')
  const base = loadConfig(AgentConfigSchema, { component: 'agent', env: 'base' })
  t.same(base.jobs, c.jobs, 'base.yaml states the jobs defaults')
  const on = validateConfig(AgentConfigSchema, {
    hostName: '192.168.1.10',
    jobs: {
      apiserver: '10.0.0.5:15006',
      tokenFile: '/etc/shoal/a.token',
      roots: ['/usr/local/data'],
      concurrency: 4,
      bandwidthClasses: { bulk: '20MiB', urgent: 0 },
    },
  })
  t.same(on.jobs.bandwidthClasses, { bulk: 20 << 20, urgent: 0 }, 'class rates in bandwidth units')
  t.equal(on.hostName, '192.168.1.10')
  t.match(on.jobs, { apiserver: '10.0.0.5:15006', roots: ['/usr/local/data'], concurrency: 4 })
  for (const [bad, why] of [
    [{ jobs: { root: ['/x'] } }, /unknown key "jobs.root"/],
    [{ jobs: { roots: ['data'] } }, /absolute path/],
    [{ jobs: { concurrency: 0 } }, /concurrency/],
    [{ hostName: 'a b' }, /hostName/],
    [{ jobs: { bandwidthClasses: { bulk: '8Mb' } } }, /jobs\.bandwidthClasses\.bulk/],
    [{ jobs: { bandwidthClasses: { 'a/b': 0 } } }, /jobs\.bandwidthClasses\.a\/b": Invalid key/],
  ] as const)
    t.throws(() => validateConfig(AgentConfigSchema, bad), { code: 'CONFIG_INVALID', message: why })
})

t.test('roots: real paths inside, links and ".." judged', async (t) => {
  t.ok(isInside('/r', '/r'))
  t.ok(isInside('/r/x/y', '/r'))
  t.ok(isInside('/r/..x', '/r'), 'a name that starts with two dots is inside')
  t.notOk(isInside('/rx', '/r'), 'a sibling with the root as prefix is not')
  t.notOk(isInside('/', '/r'))
  const dir = await mkdtemp(join(tmpdir(), 'shoal-roots-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const root = join(dir, 'root')
  await mkdir(join(root, 'a'), { recursive: true })
  await symlink(join(dir, 'gone'), join(root, 'dangling'))
  await symlink(join(root, 'a'), join(root, 'inner'))
  t.equal(await realDestination(join(root, 'a/new/deeper'), [root], 'dst'), join(root, 'a/new/deeper'))
  t.equal(
    await realDestination(join(root, 'inner/x'), [root], 'dst'),
    join(root, 'a/x'),
    'a link inside is fine',
  )
  await t.rejects(realDestination(join(root, 'dangling/x'), [root], 'dst'), {
    code: 'INVALID_PATH',
    message: /dangling/,
  })
  await t.rejects(realDestination(`${root}/a/../../x`, [root], 'dst'), {
    code: 'INVALID_PATH',
    message: /"\.\."/,
  })
  await t.rejects(realDestination(join(dir, 'x'), [root], 'dst'), {
    code: 'FORBIDDEN',
    message: /jobs\.roots/,
  })
  await t.rejects(realSource(join(root, 'nope'), [root], 'source'), {
    code: 'INVALID_PATH',
    message: /no such file/,
  })
  t.equal(await realSource(join(root, 'inner'), [root], 'source'), join(root, 'a'))
})

/** A resource client that answers from a script: each call takes the next answer for its method. */
function fakeClient(script: { get: Array<() => DistributionTask>; put: Array<Error | undefined> }) {
  const written: TaskStatusT[] = []
  const client = {
    get: async () => {
      const next = script.get.length > 1 ? script.get.shift() : script.get[0]
      return (next as () => DistributionTask)()
    },
    updateStatus: async (_ns: string, obj: { status?: TaskStatusT }) => {
      const err = script.put.shift()
      if (err) throw err
      written.push(obj.status as TaskStatusT)
      return obj
    },
  }
  return { client: client as unknown as ResourceClient<TaskSpecT, TaskStatusT>, written }
}

const task = (uid = 'u1', rv = '7') =>
  ({
    metadata: { name: 't', namespace: 'default', uid, resourceVersion: rv, generation: 1 },
    spec: {},
  }) as unknown as DistributionTask

const running: TaskStatusT = { phase: 'Running', observedGeneration: 1, attempts: 1, bytes: 0, seconds: 0 }
const done: TaskStatusT = { ...running, phase: 'Succeeded', bytes: 10 }

t.test('status sink: 409 and a down apiserver are retried; the newest status wins', async (t) => {
  const { client, written } = fakeClient({
    get: [() => task()],
    put: [
      new ShoalError('CONFLICT', 'stale'),
      new ShoalError('UNAVAILABLE', 'down'),
      new ShoalError('UNAVAILABLE', 'down'),
      undefined,
    ],
  })
  const stop = new AbortController()
  const sink = new StatusSink(
    client,
    { namespace: 'default', name: 't', uid: 'u1' },
    silentLogger(),
    stop.signal,
  )
  sink.set(running)
  sink.set(done) // replaces Running before it could be written
  await sink.flushed()
  t.same(written, [done], 'only the final status, once, after the retries')
})

t.test('status sink: a task gone or re-created is not written; a stop ends the retries', async (t) => {
  const gone = fakeClient({
    get: [
      () => {
        throw new ShoalError('NOT_FOUND', 'no such task')
      },
    ],
    put: [],
  })
  const stop = new AbortController()
  const ref = { namespace: 'default', name: 't', uid: 'u1' }
  const a = new StatusSink(gone.client, ref, silentLogger(), stop.signal)
  a.set(done)
  await a.flushed()
  t.same(gone.written, [], 'deleted: nothing written')
  const other = fakeClient({ get: [() => task('u2')], put: [] })
  const b = new StatusSink(other.client, ref, silentLogger(), stop.signal)
  b.set(done)
  await b.flushed()
  t.same(other.written, [], 're-created (another uid): nothing written')
  const down = fakeClient({
    get: [() => task()],
    put: Array(100).fill(new ShoalError('UNAVAILABLE', 'down')),
  })
  const c = new StatusSink(down.client, ref, silentLogger(), stop.signal)
  c.set(done)
  setTimeout(() => stop.abort(), 300)
  await c.flushed()
  t.same(down.written, [], 'given up at the stop')
})

t.test(
  'ingress caps of one shared download: the most generous asked for wins, only ever raised',
  async (t) => {
    const applied: number[] = []
    const caps = new IngressCaps((_ih, rate) => applied.push(rate))
    const d = Digest.fromHash(createHash('sha256').update('x'))
    const ih = InfoHash.fromBytes(Buffer.alloc(20, 1))
    caps.ask(d, 1000, true)
    t.equal(caps.started(d, ih), 1000, 'the first request sets the start cap')
    caps.ask(d, 500, false)
    t.same(applied, [], 'a lower cap joining is not applied')
    caps.ask(d, 4000, false)
    caps.ask(d, undefined, false)
    t.same(applied, [4000, 0], 'a higher one raises it; an uncapped request lifts it')
    caps.ask(d, 10, false)
    t.same(applied, [4000, 0], 'and it stays lifted')
    caps.finished(d)
    caps.ask(d, undefined, true)
    t.equal(caps.started(d, ih), undefined, 'a new download asked without a cap has none')
    t.equal(parseIngressCap(undefined), undefined)
    t.equal(parseIngressCap('2097152'), 2097152)
    for (const bad of ['', ' 1', '1.5', '0x10', '20MiB', ['1', '2']])
      t.throws(() => parseIngressCap(bad), { code: 'BAD_REQUEST' }, `${JSON.stringify(bad)} refused`)
  },
)
