/**
 * lib/events without a server: time-sorted names, the bounds of an event's spec, the pruner's
 * cut (count and age) over a real file store, `--since`, and the job controller's call.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createResourceStore } from '../../lib/apiserver/store/index.js'
import { formatEvent, parseSince } from '../../lib/cli/events-program.js'
import { ShoalError } from '../../lib/errors/index.js'
import {
  EVENTS_NAMESPACE,
  type EventInput,
  EventKind,
  EventPruner,
  EventSpec,
  eventName,
  eventSpec,
  recordJobTransition,
  timeOfName,
} from '../../lib/events/index.js'
import { silentLogger } from '../../lib/log/index.js'

const defaults = { actor: 'svc', host: 'h1' }

t.test('names sort by time, then by record order within a millisecond', async (t) => {
  const t0 = new Date('2026-12-06T00:15:12.345Z')
  const names = [
    eventName(t0),
    eventName(t0),
    eventName(new Date(t0.getTime() + 1)),
    eventName(new Date('2027-01-01T00:00:00Z')),
  ]
  t.same([...names].sort(), names)
  t.match(names[0], /^20261206001512345-[0-9a-f]{6}-\d{6}$/)
  t.equal(timeOfName(names[0] as string), t0.getTime())
  t.ok(Number.isNaN(timeOfName('not-ours')))
})

t.test('eventSpec fills defaults, keeps an error code, and bounds what it is given', async (t) => {
  const s = eventSpec({ action: 'push', subject: 'sha256:1' }, defaults)
  t.match(s, { actor: 'svc', host: 'h1', outcome: 'ok', details: {} })
  t.ok(EventSpec.safeParse(s).success, 'valid against the kind')
  const failed = eventSpec(
    { action: 'tag.put', subject: 'x', error: new ShoalError('TAG_CONFLICT', 'points elsewhere') },
    defaults,
  )
  t.match(failed, { outcome: 'failed', error: 'TAG_CONFLICT: points elsewhere' })
  const huge = eventSpec(
    { action: 'gc', subject: 's'.repeat(10_000), details: { blob: 'x'.repeat(10_000) } },
    defaults,
  )
  t.equal(huge.subject.length, 4096, 'subject cut')
  t.match(huge.details, { omitted: /details too large/ })
  t.ok(EventSpec.safeParse(huge).success)
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  t.same(eventSpec({ action: 'gc', subject: 's', details: cyclic }, defaults).details, {
    omitted: 'details are not JSON',
  })
  t.notOk(EventSpec.safeParse({ ...s, action: 'Tag Put' }).success, 'actions are lower-case words')
})

t.test('the pruner deletes what is older than maxAge, then the oldest beyond maxEvents', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-prune-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const store = createResourceStore({ type: 'file', dir, historyEvents: 1000, compactEveryRecords: 1000 })
  await store.start()
  t.teardown(() => store.stop())
  const now = Date.parse('2026-12-06T12:00:00Z')
  const ages = [5 * 3600, 3 * 3600, 2 * 3600 - 1, 1800, 600, 60, 1] // seconds before now
  for (const age of ages) {
    const time = new Date(now - age * 1000)
    await store.create(EventKind, EVENTS_NAMESPACE, {
      metadata: { name: eventName(time) },
      spec: eventSpec({ action: 'push', subject: `age-${age}`, time }, defaults),
    })
  }
  const subjects = async () =>
    (await store.list(EventKind, { namespace: EVENTS_NAMESPACE })).items.map(
      (o) => (o.spec as { subject: string }).subject,
    )
  const byAge = new EventPruner(
    store,
    { maxEvents: 100, maxAgeSeconds: 2 * 3600, pruneIntervalSeconds: 60 },
    {
      logger: silentLogger(),
      now: () => now,
    },
  )
  t.equal(await byAge.prune(), 2, 'the two older than 2 h')
  t.same(await subjects(), ['age-7199', 'age-1800', 'age-600', 'age-60', 'age-1'])
  const byCount = new EventPruner(
    store,
    { maxEvents: 3, maxAgeSeconds: 2 * 3600, pruneIntervalSeconds: 60 },
    {
      logger: silentLogger(),
      now: () => now,
    },
  )
  t.equal(await byCount.prune(), 2)
  t.same(await subjects(), ['age-600', 'age-60', 'age-1'], 'the newest 3 kept')
  t.equal(await byCount.prune(), 0, 'nothing more to do')
})

t.test('--since: a duration before now or an ISO time', async (t) => {
  const now = Date.parse('2026-12-06T12:00:00Z')
  t.equal(parseSince('10m', now), now - 600_000)
  t.equal(parseSince('2h', now), now - 7_200_000)
  t.equal(parseSince('1d', now), now - 86_400_000)
  t.equal(parseSince('90s', now), now - 90_000)
  t.equal(parseSince('2026-12-06T10:00:00Z', now), Date.parse('2026-12-06T10:00:00Z'))
  for (const bad of ['', '10', '10y', 'yesterday', '2026-13-45'])
    t.throws(() => parseSince(bad, now), { code: 'USAGE' }, bad)
})

t.test('recordJobTransition: job.<phase> and task.<phase> events carrying the job', async (t) => {
  const got: EventInput[] = []
  const recorder = { record: (e: EventInput) => got.push(e) }
  recordJobTransition(recorder, { job: 'nightly', phase: 'Running', from: 'Pending' })
  recordJobTransition(recorder, {
    job: 'nightly',
    phase: 'Failed',
    task: { name: 'nightly-pull-h10', host: '10.0.0.10', action: 'pull', attempt: 2 },
    error: new ShoalError('TIMEOUT', 'no progress for 120 s'),
    details: { bytes: 10 },
  })
  const specs = got.map((e) => eventSpec(e, defaults))
  t.match(specs[0], {
    action: 'job.running',
    subject: 'nightly',
    job: 'nightly',
    outcome: 'ok',
    actor: 'job-controller',
    details: { from: 'Pending' },
  })
  t.match(specs[1], {
    action: 'task.failed',
    subject: 'nightly-pull-h10',
    job: 'nightly',
    outcome: 'failed',
    actor: '10.0.0.10',
    error: 'TIMEOUT: no progress for 120 s',
    details: { host: '10.0.0.10', taskAction: 'pull', attempt: 2, bytes: 10 },
  })
  for (const s of specs) t.ok(EventSpec.safeParse(s).success)
  t.match(
    formatEvent(specs[1] as never),
    /task\.failed .*nightly-pull-h10 {2}by 10\.0\.0\.10 on h1 {2}job=nightly .*error: TIMEOUT/,
  )
})
