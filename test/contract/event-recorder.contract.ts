/**
 * The suite every queued EventRecorder sink passes (the herd's in-process store, a remote
 * apiserver over HTTP): events arrive with their fields and in order, a refused event does not
 * hold up the rest, a sink that is down never blocks `record()` (the queue is bounded, drops are
 * counted, what was queued is written once the sink is back), and stop() flushes.
 *
 * `make` gives a started, empty event log: `sink` writes to it, `list` reads it, `down`/`up`
 * take it away and bring it back on the same data (a restart).
 */
import type { Test } from 'tap'
import {
  type EventResource,
  type EventSink,
  QueuedEventRecorder,
  type RecorderOptions,
} from '../../lib/events/index.js'
import { silentLogger } from '../../lib/log/index.js'

export interface EventLogHandle {
  sink: EventSink
  list(): Promise<EventResource[]>
  down(): Promise<void>
  up(): Promise<void>
  cleanup(): Promise<void>
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`not true within ${ms} ms: ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

export function eventRecorderContract(t: Test, name: string, make: () => Promise<EventLogHandle>): void {
  const setup = async (t: Test, opts: Partial<RecorderOptions> = {}) => {
    const log = await make()
    t.teardown(() => log.cleanup())
    const recorder = new QueuedEventRecorder(log.sink, {
      logger: silentLogger(),
      service: 'test-service',
      host: 'host-a',
      retryMs: 20,
      maxRetryMs: 100,
      ...opts,
    })
    await recorder.start()
    t.teardown(() => recorder.stop())
    return { log, recorder }
  }

  t.test(`${name}: events are written with their fields, in the order recorded`, async (t) => {
    const { log, recorder } = await setup(t)
    for (let i = 0; i < 20; i++)
      recorder.record({ action: 'push', subject: `sha256:${i}`, actor: 'alice', details: { i } })
    recorder.record({ action: 'tag.put', subject: 'x:1', tag: 'x:1', error: new Error('boom') })
    // Over HTTP the store holds an event before its answer is back: wait for both.
    await until(
      '21 events stored and counted',
      async () => (await log.list()).length === 21 && recorder.counts.written === 21,
    )
    const items = await log.list()
    t.same(
      items.slice(0, 20).map((e) => e.spec.details.i),
      [...Array(20).keys()],
      'list order is record order (names sort by time)',
    )
    t.match(items[0]?.spec, {
      action: 'push',
      subject: 'sha256:0',
      actor: 'alice',
      host: 'host-a',
      outcome: 'ok',
    })
    t.match(items[20]?.spec, {
      action: 'tag.put',
      tag: 'x:1',
      actor: 'test-service',
      outcome: 'failed',
      error: 'INTERNAL: boom',
    })
    t.equal(recorder.counts.written, 21)
    t.equal(recorder.counts.dropped, 0)
  })

  t.test(`${name}: an event the log refuses is dropped and counted; the next ones go on`, async (t) => {
    const { log, recorder } = await setup(t)
    recorder.record({ action: 'Not An Action', subject: 's' })
    recorder.record({ action: 'remove', subject: 'x:1' })
    await until('the good event stored', async () => (await log.list()).length === 1 && recorder.queued === 0)
    t.equal((await log.list())[0]?.spec.action, 'remove')
    t.equal(recorder.counts.dropped, 1)
  })

  t.test(
    `${name}: a log that is down never blocks record(); the queue is bounded and drops counted`,
    async (t) => {
      const { log, recorder } = await setup(t, { maxQueued: 5 })
      await log.down()
      for (let i = 0; i < 12; i++) {
        const r: unknown = recorder.record({ action: 'push', subject: `d${i}` })
        t.equal(r, undefined, 'record returns nothing to wait for')
      }
      t.equal(recorder.counts.dropped, 7, 'beyond 5 queued, dropped')
      t.equal(recorder.queued, 5)
      await log.up()
      await until(
        'the queued events written',
        async () => (await log.list()).length === 5 && recorder.counts.written === 5,
      )
      t.same(
        (await log.list()).map((e) => e.spec.subject),
        ['d0', 'd1', 'd2', 'd3', 'd4'],
      )
      t.equal(recorder.counts.written, 5)
    },
  )

  t.test(
    `${name}: stop() flushes what is queued; what cannot be written is dropped and counted`,
    async (t) => {
      const { log, recorder } = await setup(t)
      for (let i = 0; i < 10; i++) recorder.record({ action: 'gc', subject: `g${i}` })
      await recorder.stop()
      t.equal((await log.list()).length, 10, 'all written before stop resolved')
      recorder.record({ action: 'gc', subject: 'late' })
      t.equal(recorder.counts.dropped, 1, 'after stop: dropped')

      const other = await setup(t, { flushMs: 50 })
      await other.log.down()
      for (let i = 0; i < 3; i++) other.recorder.record({ action: 'gc', subject: `h${i}` })
      await other.recorder.stop()
      t.equal(other.recorder.counts.dropped, 3)
    },
  )
}
