/**
 * The job controller against a real resource API (file store, HTTP on loopback), with task
 * statuses written by hand as the hosts' agents would: push then pulls, a failed target named,
 * rerun of the failed only, cancel, the deadline of a host that never answers, deletion, and a
 * restart of API and controller that converges on what was written meanwhile.
 */
import t from 'tap'
import { Tag } from '../../lib/core/tag.js'
import { CANCELLED_ERROR } from '../../lib/jobs/reconcile.js'
import { type JobsRig, NS, startJobsRig, until } from '../helpers/jobs.js'

const SRC = { host: '192.168.1.1', path: '/usr/local/data/xxx交易数据.txt' }
const TARGETS = ['192.168.1.10', '192.168.1.11', '192.168.1.12'].map((host) => ({
  host,
  path: '/usr/local/data',
}))

async function createJob(rig: JobsRig, name: string, spec: Record<string, unknown> = {}) {
  return rig.dists.create(NS, {
    metadata: { name },
    spec: { source: SRC, targets: TARGETS, ...spec } as never,
  })
}

const phaseOf = async (rig: JobsRig, name: string) => (await rig.dist(name)).status?.phase

async function pushThrough(rig: JobsRig, job: string) {
  const push = await until('the push task', () => rig.task(`${job}-push`))
  await rig.report(`${job}-push`, { phase: 'Running' })
  await rig.report(`${job}-push`, { phase: 'Succeeded', path: push.spec.tag, bytes: 100 })
  for (let i = 0; i < TARGETS.length; i++) await until(`pull ${i}`, () => rig.task(`${job}-t${i}`))
  return push.spec.tag
}

t.test('push first, then one pull per target with its tag; all succeed', async (t) => {
  const rig = await startJobsRig(t)
  const d = await createJob(rig, 'j1')
  const push = await until('the push task', () => rig.task('j1-push'))
  t.equal(push.spec.action, 'push')
  t.equal(push.spec.host, SRC.host)
  t.equal(push.spec.sourcePath, SRC.path)
  const tag = Tag.parse(push.spec.tag)
  t.equal(tag.srcHost, SRC.host)
  t.equal(tag.fileName, 'xxx交易数据.txt')
  t.match(tag.version, /^j1-[0-9a-f]{8}-r1$/)
  t.same(push.metadata.ownerReferences, [
    { apiVersion: 'shoal.io/v1', kind: 'Distribution', name: 'j1', uid: d.metadata.uid, controller: true },
  ])
  t.equal(push.metadata.labels['shoal.io/distribution'], 'j1')
  await t.rejects(rig.task('j1-t0'), { code: 'NOT_FOUND' }, 'no pull before the push succeeded')
  const running = await until(
    'Running',
    async () => (await phaseOf(rig, 'j1')) === 'Pending' && (await rig.dist('j1')),
  )
  t.equal(running.status?.targets.length, 3)

  await pushThrough(rig, 'j1')
  const pulls = await rig.tasks.list(NS, { fieldSelector: 'spec.distribution=j1,spec.action=pull' })
  t.equal(pulls.items.length, 3)
  for (const p of pulls.items) t.equal(p.spec.tag, push.spec.tag)
  t.same(
    pulls.items.map((p) => p.spec.host).sort(),
    TARGETS.map((x) => x.host),
  )
  const onHost = await rig.tasks.list(NS, { fieldSelector: 'spec.host=192.168.1.11' })
  t.same(
    onHost.items.map((p) => p.metadata.name),
    ['j1-t1'],
    'an agent finds its work by spec.host',
  )

  for (let i = 0; i < 3; i++)
    await rig.report(`j1-t${i}`, {
      phase: 'Succeeded',
      bytes: 100,
      seconds: 0.5,
      source: 'swarm',
      path: `/usr/local/data/xxx交易数据.txt`,
    })
  const done = await until('Succeeded', async () => {
    const x = await rig.dist('j1')
    return x.status?.phase === 'Succeeded' && x
  })
  t.equal(done.status?.counts?.succeeded, 3)
  t.equal(done.status?.tag, push.spec.tag)
  t.same(
    done.status?.conditions.map((c) => [c.type, c.status]),
    [
      ['Complete', 'True'],
      ['Failed', 'False'],
    ],
  )
  t.equal(done.status?.observedGeneration, done.metadata.generation)
  t.equal(done.status?.targets[1]?.source, 'swarm')
  t.ok(
    rig.transitions.some((x) => x.subject === 'job' && x.to === 'Succeeded'),
    'job transition reported',
  )
  t.ok(
    rig.transitions.some((x) => x.subject === 'target' && x.host === '192.168.1.12' && x.to === 'Succeeded'),
  )
})

t.test('a failed target fails the job naming it; rerun --failed re-runs only that one', async (t) => {
  const rig = await startJobsRig(t)
  await createJob(rig, 'j2')
  await pushThrough(rig, 'j2')
  await rig.report('j2-t0', { phase: 'Succeeded' })
  await rig.report('j2-t1', {
    phase: 'Failed',
    lastError: 'INVALID_PATH: /usr/local/data is outside the allowed roots',
  })
  await rig.report('j2-t2', { phase: 'Succeeded' })
  const failed = await until('Failed', async () => {
    const x = await rig.dist('j2')
    return x.status?.phase === 'Failed' && x
  })
  const cond = failed.status?.conditions.find((c) => c.type === 'Failed')
  t.equal(cond?.status, 'True')
  t.match(cond?.message, /1 of 3 targets failed: 192\.168\.1\.11:\/usr\/local\/data \(INVALID_PATH/)
  t.equal(failed.status?.targets[1]?.phase, 'Failed')

  await rig.dists.patch(NS, 'j2', { spec: { run: 2, rerun: 'failed' } })
  const t1 = await until('t1 re-run', async () => {
    const x = await rig.task('j2-t1')
    return x.spec.attempt === 2 && x.status?.phase === 'Pending' && x
  })
  t.ok(t1.metadata.generation > (t1.status?.observedGeneration ?? 0), 'the agent sees a newer generation')
  await until('observedRun', async () => (await rig.dist('j2')).status?.observedRun === 2)
  t.equal((await rig.task('j2-t0')).spec.attempt, 1, 'a succeeded target is left alone')
  t.equal((await rig.task('j2-push')).spec.attempt, 1, 'the push is not redone')
  t.equal((await rig.dist('j2')).status?.phase, 'Running')
  await rig.report('j2-t1', { phase: 'Succeeded' })
  await until('Succeeded', async () => (await phaseOf(rig, 'j2')) === 'Succeeded')
})

t.test('a failed push fails every target; rerun pushes again under a new tag, then pulls', async (t) => {
  const rig = await startJobsRig(t)
  await createJob(rig, 'j3')
  const push = await until('the push task', () => rig.task('j3-push'))
  await rig.report('j3-push', { phase: 'Failed', lastError: 'NOT_FOUND: no such file' })
  const failed = await until('Failed', async () => {
    const x = await rig.dist('j3')
    return x.status?.phase === 'Failed' && x
  })
  for (const l of failed.status?.targets ?? [])
    t.match(l.lastError, /the push on 192\.168\.1\.1 failed: NOT_FOUND/)
  t.equal((await rig.tasks.list(NS, { fieldSelector: 'spec.action=pull' })).items.length, 0)

  await rig.dists.patch(NS, 'j3', { spec: { run: 2 } })
  const again = await until('a new push', async () => {
    const x = await rig.task('j3-push')
    return x.spec.attempt === 2 && x
  })
  t.not(again.spec.tag, push.spec.tag)
  t.match(Tag.parse(again.spec.tag).version, /-r2$/)
  await rig.report('j3-push', { phase: 'Succeeded' })
  for (let i = 0; i < 3; i++) {
    const p = await until(`pull ${i}`, () => rig.task(`j3-t${i}`))
    t.equal(p.spec.tag, again.spec.tag)
    await rig.report(`j3-t${i}`, { phase: 'Succeeded' })
  }
  await until('Succeeded', async () => (await phaseOf(rig, 'j3')) === 'Succeeded')
})

t.test('the deadline fails a host that never answers without holding the others', async (t) => {
  const rig = await startJobsRig(t)
  await rig.dists.create(NS, {
    metadata: { name: 'j4' },
    spec: { source: { tag: 'h-/d-f.txt:v1' }, targets: TARGETS, options: { timeoutSeconds: 1 } } as never,
  })
  for (let i = 0; i < 3; i++) await until(`pull ${i}`, () => rig.task(`j4-t${i}`))
  await rig.report('j4-t0', { phase: 'Succeeded' })
  await rig.report('j4-t2', { phase: 'Succeeded' })
  const failed = await until('Failed', async () => {
    const x = await rig.dist('j4')
    return x.status?.phase === 'Failed' && x
  })
  t.match(
    failed.status?.targets[1]?.lastError,
    'TIMEOUT: host 192.168.1.11 did not start the pull within 1 s: is its agent running with jobs enabled?',
  )
  t.equal(failed.status?.counts?.succeeded, 2)
  const task = await rig.task('j4-t1')
  t.equal(task.status?.observedGeneration, task.metadata.generation, 'an agent coming back does not run it')

  // The host comes back; rerun picks it up with a new deadline.
  await rig.dists.patch(NS, 'j4', { spec: { run: 2 } })
  await until('re-run', async () => (await rig.task('j4-t1')).spec.attempt === 2)
  await rig.report('j4-t1', { phase: 'Running' })
  await rig.report('j4-t1', { phase: 'Succeeded' })
  await until('Succeeded', async () => (await phaseOf(rig, 'j4')) === 'Succeeded')
})

t.test('cancel fails what is unfinished; rerun after it starts them again', async (t) => {
  const rig = await startJobsRig(t)
  await createJob(rig, 'j5')
  await pushThrough(rig, 'j5')
  await rig.report('j5-t0', { phase: 'Succeeded' })
  await rig.report('j5-t1', { phase: 'Running' })
  await rig.dists.patch(NS, 'j5', { spec: { cancelled: true } })
  const failed = await until('Failed', async () => {
    const x = await rig.dist('j5')
    return x.status?.phase === 'Failed' && x
  })
  t.equal(failed.status?.conditions.find((c) => c.type === 'Failed')?.reason, 'Cancelled')
  t.equal(failed.status?.targets[0]?.phase, 'Succeeded')
  for (const i of [1, 2]) {
    const task = await rig.task(`j5-t${i}`)
    t.equal(task.spec.cancelled, true)
    t.equal(task.status?.lastError, CANCELLED_ERROR)
  }
  t.equal((await rig.task('j5-t0')).spec.cancelled, false, 'a finished task is not touched')

  await rig.dists.patch(NS, 'j5', { spec: { cancelled: false, run: 2 } })
  await until('re-run', async () => {
    const x = await rig.task('j5-t2')
    return x.spec.attempt === 2 && !x.spec.cancelled
  })
  t.equal((await rig.task('j5-t0')).spec.attempt, 1)
})

t.test('deleting a Distribution deletes its tasks', async (t) => {
  const rig = await startJobsRig(t)
  await createJob(rig, 'j6')
  await pushThrough(rig, 'j6')
  await rig.dists.delete(NS, 'j6')
  await until('tasks gone', async () => (await rig.tasks.list(NS)).items.length === 0)
})

t.test('a restart converges: work done and deletions made while the controller was down', async (t) => {
  const rig = await startJobsRig(t)
  await createJob(rig, 'j7')
  await createJob(rig, 'j8')
  const push = await until('the push task', () => rig.task('j7-push'))
  await until('the other push', () => rig.task('j8-push'))
  await rig.restart(async () => {
    // While the herd is down for the controller: the source's agent finished, j8 was deleted.
    await rig.report('j7-push', { phase: 'Succeeded', path: push.spec.tag })
    await rig.dists.delete(NS, 'j8')
  })
  for (let i = 0; i < 3; i++) await until(`pull ${i} after restart`, () => rig.task(`j7-t${i}`))
  await until(
    'j8 tasks gone',
    async () => (await rig.tasks.list(NS, { fieldSelector: 'spec.distribution=j8' })).items.length === 0,
  )

  // A second restart with nothing new changes nothing: same tasks, same generations.
  const before = (await rig.tasks.list(NS)).items.map((x) => `${x.metadata.name}@${x.metadata.generation}`)
  const status = (await rig.dist('j7')).status
  await rig.restart()
  await rig.controller.idle()
  await until('controller reconciled', () => rig.controller.reconciles > 0)
  await rig.controller.idle()
  t.same(
    (await rig.tasks.list(NS)).items.map((x) => `${x.metadata.name}@${x.metadata.generation}`),
    before,
  )
  t.same((await rig.dist('j7')).status, status)
})
