/**
 * lib/lifecycle: a part starts and stops once however often it is asked, a failed or aborted
 * start leaves nothing running, and startAll starts in order, rolls back in reverse when a part
 * fails, and stops in reverse.
 */
import { createServer } from 'node:net'
import t from 'tap'
import { Lifecycle, ReservedListener, type Service, startAll } from '../../lib/lifecycle/index.js'

function part(name: string, log: string[], opts: { fail?: boolean } = {}): Service {
  return new Lifecycle(name, {
    start: async () => {
      log.push(`start ${name}`)
      if (opts.fail) throw new Error(`${name} cannot start`)
    },
    stop: async () => {
      log.push(`stop ${name}`)
    },
  })
}

t.test('start and stop are idempotent; a stopped part does not start again', async (t) => {
  const log: string[] = []
  const a = part('a', log)
  await a.stop()
  t.same(log, [], 'stop before start does nothing')
  const b = part('b', log)
  await Promise.all([b.start(), b.start()])
  await b.start()
  await Promise.all([b.stop(), b.stop()])
  await b.stop()
  t.same(log, ['start b', 'stop b'])
  await t.rejects(b.start(), { code: 'UNAVAILABLE', message: 'b is stopped' })
})

t.test('a failed start is rolled back and a later stop is a no-op', async (t) => {
  const log: string[] = []
  const a = part('a', log, { fail: true })
  await t.rejects(a.start(), { message: 'a cannot start' })
  await a.stop()
  t.same(log, ['start a', 'stop a'], 'stopped once, by the rollback')
})

t.test('startAll starts in order, rolls back in reverse, stops in reverse', async (t) => {
  const log: string[] = []
  await t.rejects(
    startAll([part('a', log), () => part('b', log), part('c', log, { fail: true }), part('d', log)]),
    {
      message: 'c cannot start',
    },
  )
  t.same(log, ['start a', 'start b', 'start c', 'stop c', 'stop b', 'stop a'], 'd never started')

  log.length = 0
  const all = await startAll([part('a', log), part('b', log)])
  await Promise.all([all.stop(), all.stop()])
  t.same(log, ['start a', 'start b', 'stop b', 'stop a'])
})

t.test('an abort during start stops what started and rejects ABORTED', async (t) => {
  const log: string[] = []
  const ac = new AbortController()
  const aborting = new Lifecycle('b', {
    start: async () => {
      log.push('start b')
      ac.abort()
    },
    stop: async () => {
      log.push('stop b')
    },
  })
  await t.rejects(startAll([part('a', log), aborting, part('c', log)], ac.signal), { code: 'ABORTED' })
  t.same(log, ['start a', 'start b', 'stop b', 'stop a'])
  await t.rejects(part('d', log).start(AbortSignal.abort()), { code: 'ABORTED', message: 'd: start aborted' })
})

t.test(
  'a reserved listener is bound at start and handed over; a taken port is one clear error',
  async (t) => {
    const reserved = new ReservedListener('thing', '127.0.0.1', 0)
    await reserved.start()
    const port = reserved.port
    const server = createServer((s) => s.end('hi'))
    await new Promise<void>((r) => server.listen(reserved.server, r))
    t.equal((server.address() as { port: number }).port, port, 'the server serves on the reserved port')
    const taken = new ReservedListener('other', '127.0.0.1', port)
    await t.rejects(taken.start(), {
      code: 'UNAVAILABLE',
      message: `other: cannot listen on 127.0.0.1:${port}: EADDRINUSE (another process is using it; pick another port in the config)`,
    })
    await new Promise<void>((r) => server.close(() => r()))
    await reserved.stop()
    const again = new ReservedListener('again', '127.0.0.1', port)
    await again.start()
    t.equal(again.port, port, 'the port is free again')
    await again.stop()
  },
)
