/**
 * `shoal job` against a real resource API and job controller, with the hosts' agents played by
 * a watch that answers each task by a rule: plan errors (exit 2, the field named), --wait exit
 * codes (0 all succeeded; one error code → its exit; mixed → 1), the table, --json, get, list,
 * rerun --failed and cancel.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { jobCommand } from '../../lib/cli/job-program.js'
import type { DistributionTask, TaskStatusT } from '../../lib/jobs/kinds.js'
import { cliRunner } from '../helpers/cli-run.js'
import { type JobsRig, NS, startJobsRig, until } from '../helpers/jobs.js'

const run = (rig: JobsRig, args: string[], env: NodeJS.ProcessEnv = {}) =>
  cliRunner(rig.dir)(jobCommand as never, args, { env: { SHOAL_APISERVER: rig.url, ...env } })

type Rule = (t: DistributionTask) => Partial<TaskStatusT> & { phase: TaskStatusT['phase'] }

/** Agents for every host: each new generation of a task is answered by `rule`. */
function agents(t: { teardown(fn: () => unknown): void }, rig: JobsRig, rule: { current: Rule }) {
  const ac = new AbortController()
  t.teardown(() => ac.abort())
  void (async () => {
    try {
      for await (const ev of rig.tasks.watch({ signal: ac.signal, retryMs: 50 })) {
        if (ev.type !== 'ADDED' && ev.type !== 'MODIFIED') continue
        const task = ev.object
        if ((task.status?.observedGeneration ?? 0) >= task.metadata.generation) continue
        if (task.spec.cancelled) continue
        await rig
          .report(task.metadata.name, {
            attempts: (task.status?.attempts ?? 0) + 1,
            ...(task.spec.action === 'push' ? { path: task.spec.tag } : {}),
            ...rule.current(task),
          })
          .catch(() => undefined)
      }
    } catch {}
  })()
}

const PLAN = `# the §6.3 example
name: trade
source: { host: 192.168.1.1, path: /usr/local/data/xxx交易数据.txt }
targets:
  - { host: 192.168.1.10, path: /usr/local/data }
  - { host: 192.168.1.11, path: /usr/local/data }
  - { host: 192.168.1.12, path: /usr/local/data }
`

t.test('plan errors are usage errors naming the field; nothing is created', async (t) => {
  const rig = await startJobsRig(t)
  const bad = join(rig.dir, 'bad.yaml')
  await writeFile(bad, 'source: {host: h, path: /a}\ntargets:\n  - {host: x, path: data}\n')
  let r = await run(rig, ['run', bad])
  t.equal(r.code, 2)
  t.match(r.err, /targets\.0\.path: must be an absolute path/)
  await writeFile(bad, 'source: [\n')
  r = await run(rig, ['run', bad])
  t.equal(r.code, 2)
  t.match(r.err, /is not valid YAML or JSON/)
  await writeFile(
    bad,
    '{"source": {"tag": "h-/d-f:1"}, "targets": [{"host": "x", "path": "/d", "name": "../../etc/passwd"}]}',
  )
  r = await run(rig, ['run', bad, '--json'])
  t.equal(r.code, 2)
  t.match(JSON.parse(r.out), {
    error: { code: 'USAGE', message: /targets\.0\.name: must be a file name/ },
    exitCode: 2,
  })
  r = await run(rig, ['run', bad, '--src', 'h:/x', '--to', 'y:/d'])
  t.match(r, { code: 2, err: /either a PLAN file or --src/ })
  r = await run(rig, ['run', '--src', 'h-no-path', '--to', 'y:/d'])
  t.match(r, { code: 2, err: /--src h-no-path: expected HOST:\/absolute\/path/ })
  r = await run(rig, ['run', join(rig.dir, 'missing.yaml')])
  t.match(r, { code: 2, err: /cannot read plan/ })
  t.equal((await rig.dists.list(NS)).items.length, 0)
})

t.test('run --wait: 0 when every target succeeded, with the table', async (t) => {
  const rig = await startJobsRig(t)
  agents(t, rig, { current: () => ({ phase: 'Succeeded', bytes: 10, seconds: 1.25, source: 'swarm' }) })
  const plan = join(rig.dir, 'plan.yaml')
  await writeFile(plan, PLAN)
  const r = await run(rig, ['run', plan, '--wait'])
  t.equal(r.code, 0, r.err)
  t.match(
    r.err,
    /note: no agent on 192\.168\.1\.10, 192\.168\.1\.11, 192\.168\.1\.12, 192\.168\.1\.1 has answered a job yet/,
  )
  t.match(r.outLines[0], /^job trade: Succeeded \(3 of 3 targets succeeded, 0 failed/)
  t.match(r.out, /push\s+192\.168\.1\.1\s+\/usr\/local\/data\/xxx交易数据\.txt\s+Succeeded\s+1\.3/)
  for (const h of ['10', '11', '12'])
    t.match(
      r.out,
      new RegExp(`pull\\s+192\\.168\\.1\\.${h}\\s+/usr/local/data\\s+Succeeded\\s+1\\.3\\s+swarm\\s+-`),
    )

  const again = await run(rig, ['run', plan])
  t.match(again, { code: 4, err: /job trade exists already/ })
  t.notMatch(again.err, /no agent on/, 'hosts that answered are not noted')
  const got = await run(rig, ['get', 'trade', '--json'])
  t.match(JSON.parse(got.out), { name: 'trade', phase: 'Succeeded', counts: { succeeded: 3 } })
  const list = await run(rig, ['list'])
  t.match(list.outLines[1], /^trade\s+Succeeded\s+3\s+3\s+0\s+1\s+\d+s$/)
})

t.test('run --wait: a target failing exits with its code; mixed codes exit 1; rerun --failed', async (t) => {
  const rig = await startJobsRig(t)
  const rule: { current: Rule } = {
    current: (task) =>
      task.spec.host === '10.0.0.11'
        ? { phase: 'Failed', lastError: 'INVALID_PATH: /data is not under an allowed destination root' }
        : { phase: 'Succeeded' },
  }
  agents(t, rig, rule)
  const args = [
    'run',
    '--name',
    'flags',
    '--tag',
    'h-/d-f.txt:v1',
    '--to',
    '10.0.0.10:/data',
    '--to',
    '10.0.0.11:/data',
    '--wait',
  ]
  let r = await run(rig, args)
  t.equal(r.code, 7, 'INVALID_PATH exits 7')
  t.match(r.out, /10\.0\.0\.11\s+\/data\s+Failed\s+-\s+-\s+INVALID_PATH: \/data is not under/)
  t.match(r.err, /job flags failed: 1 of 2 targets failed: 10\.0\.0\.11:\/data/)

  // Rerun the failed one: the agent now succeeds.
  rule.current = () => ({ phase: 'Succeeded' })
  r = await run(rig, ['rerun', 'flags', '--wait', '--json'])
  t.equal(r.code, 0, r.err)
  const res = JSON.parse(r.out)
  t.match(res, { name: 'flags', run: 2, phase: 'Succeeded' })
  t.equal((await rig.task('flags-t0')).spec.attempt, 1, 'the succeeded target was not re-run')
  t.equal((await rig.task('flags-t1')).spec.attempt, 2)

  rule.current = (task) =>
    task.spec.host === '10.0.0.10'
      ? { phase: 'Failed', lastError: 'IO_ERROR: disk full' }
      : { phase: 'Failed', lastError: 'NOT_FOUND: no such tag' }
  r = await run(rig, ['rerun', 'flags', '--all', '--wait', '--json'])
  t.equal(r.code, 1, 'different codes: JOB_FAILED, exit 1')
  const json = JSON.parse(r.out)
  t.match(json, { error: { code: 'JOB_FAILED' }, exitCode: 1, result: { name: 'flags', phase: 'Failed' } })
  t.equal(json.result.targets.length, 2)
})

t.test('cancel: unfinished targets fail "cancelled"; a rerun --failed --all is a usage error', async (t) => {
  const rig = await startJobsRig(t)
  let r = await run(rig, ['run', '--name', 'slow', '--tag', 'h-/d-f.txt:v1', '--to', 'a:/d', '--to', 'b:/d'])
  t.equal(r.code, 0, r.err)
  t.match(r.out, /job slow created: 2 target/)
  await until('tasks', () => rig.task('slow-t1'))
  await rig.report('slow-t0', { phase: 'Succeeded' })
  r = await run(rig, ['cancel', 'slow'])
  t.equal(r.code, 0, r.err)
  await until('Failed', async () => (await rig.dist('slow')).status?.phase === 'Failed')
  r = await run(rig, ['get', 'slow'])
  t.match(r.out, /b\s+\/d\s+Failed\s+-\s+-\s+ABORTED: cancelled/)
  t.match(r.outLines[0], /cancelled/)
  r = await run(rig, ['rerun', 'slow', '--failed', '--all'])
  t.match(r, { code: 2, err: /exclude each other/ })
  r = await run(rig, ['get', 'nope'])
  t.equal(r.code, 3)
})

t.test('--bandwidth-class reaches every task, in both forms; a bad name is a usage error', async (t) => {
  const rig = await startJobsRig(t)
  const plan = join(rig.dir, 'plan.yaml')
  await writeFile(plan, PLAN)
  let r = await run(rig, ['run', plan, '--bandwidth-class', 'bulk'])
  t.equal(r.code, 0, r.err)
  t.equal((await rig.dist('trade')).spec.options.bandwidthClass, 'bulk', 'overrides the plan')
  r = await run(rig, [
    'run',
    '--name',
    'flags',
    '--tag',
    'h-/d-f.txt:v1',
    '--to',
    'x:/d',
    '--bandwidth-class',
    'urgent',
  ])
  t.equal(r.code, 0, r.err)
  t.equal((await rig.dist('flags')).spec.options.bandwidthClass, 'urgent', 'the flags form')
  const task = await until('the pull task', () => rig.task('flags-t0').catch(() => undefined))
  t.equal(task.spec.options.bandwidthClass, 'urgent', 'and the task carries it to the agent')
  r = await run(rig, ['run', plan, '--name', 'bad', '--bandwidth-class', 'no/slash'])
  t.match(r, { code: 2, err: /--bandwidth-class no\/slash: a class name/ })
  r = await run(rig, [
    'run',
    '--name',
    'bad2',
    '--tag',
    'h-/d-f.txt:v1',
    '--to',
    'x:/d',
    '--bandwidth-class',
    '../x',
  ])
  t.match(r, { code: 2, err: /options\.bandwidthClass: a class name/ })
})
