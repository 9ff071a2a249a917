/**
 * The job controller with N targets (default 1000), agents played by this process: how long the
 * controller takes to create the tasks, how long N status reports take while it summarises
 * them, and how soon after the last report the job is Succeeded. Prints one JSON line.
 *   npx tsx test/bench/jobs-controller.ts 1000
 */
import { NS, startJobsRig, until } from '../helpers/jobs.js'

const n = Number(process.argv[2] ?? 1000)
const downs: (() => unknown)[] = []
const rig = await startJobsRig({ teardown: (f) => downs.push(f) })
const targets = Array.from({ length: n }, (_, i) => ({ host: `h${i}`, path: '/data' }))
const t0 = performance.now()
await rig.dists.create(NS, {
  metadata: { name: 'big' },
  spec: { source: { tag: 'h-/d-f.txt:v1' }, targets } as never,
})
await until(
  'tasks',
  async () => (await rig.tasks.list(NS, { fieldSelector: 'spec.distribution=big' })).items.length === n,
  120_000,
)
const t1 = performance.now()
await until('summary', async () => (await rig.dist('big')).status?.counts?.total === n, 120_000)
const list = (await rig.tasks.list(NS)).items
const t2 = performance.now()
for (const task of list)
  await rig.tasks.updateStatus(NS, {
    metadata: { name: task.metadata.name },
    spec: task.spec,
    status: {
      phase: 'Succeeded',
      observedGeneration: task.metadata.generation,
      attempts: 1,
      bytes: 1,
      seconds: 0,
    },
  })
const t3 = performance.now()
await until('done', async () => (await rig.dist('big')).status?.phase === 'Succeeded', 300_000)
const t4 = performance.now()
const size = JSON.stringify(await rig.dist('big')).length
console.log(
  JSON.stringify({
    targets: n,
    createTasksMs: Math.round(t1 - t0),
    reportsMs: Math.round(t3 - t2),
    summarisedAfterLastReportMs: Math.round(t4 - t3),
    objectBytes: size,
    reconciles: rig.controller.reconciles,
  }),
)
for (const f of downs.reverse()) await f()
process.exit(0)
