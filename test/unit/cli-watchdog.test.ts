/**
 * withProgressTimeout: seconds without progress, not a total; the message says so and keeps what
 * the work was waiting for when a client reported it.
 */
import t from 'tap'
import { withProgressTimeout } from '../../lib/cli/watchdog.js'
import { ShoalError } from '../../lib/errors/index.js'

/** Resolves when the signal aborts, rejecting with what a client would throw. */
function hang(signal: AbortSignal, error: () => unknown): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener('abort', () => reject(error()), { once: true }))
}

t.test('a stall fails with TIMEOUT "… without progress", the waiting detail kept', async (t) => {
  const started = Date.now()
  await t.rejects(
    withProgressTimeout('pull of x', 0.2, (signal) =>
      hang(
        signal,
        () =>
          new ShoalError('TIMEOUT', 'the agent at h:1 had not answered GET /tags/x when the time ran out'),
      ),
    ),
    {
      code: 'TIMEOUT',
      message:
        'pull of x timed out after 0.2 s without progress (the agent at h:1 had not answered GET /tags/x when the time ran out)',
      details: { timeoutSeconds: 0.2 },
    },
  )
  t.ok(Date.now() - started >= 190)
  // An abort error says nothing more.
  await t.rejects(
    withProgressTimeout('pull of x', 0.1, (signal) => hang(signal, () => signal.reason)),
    { code: 'TIMEOUT', message: 'pull of x timed out after 0.1 s without progress' },
  )
})

t.test('work that keeps touching runs past the timeout', async (t) => {
  const started = Date.now()
  const r = await withProgressTimeout('pull of x', 0.2, async (signal, progress) => {
    for (let i = 0; i < 10; i++) {
      await new Promise((res) => setTimeout(res, 60))
      if (signal.aborted) throw new Error('aborted while moving')
      progress.touch()
    }
    return 'done'
  })
  t.equal(r, 'done')
  t.ok(Date.now() - started >= 550, 'ran for about three timeouts')
})

t.test('0: no deadline; an error of the work itself passes through', async (t) => {
  const r = await withProgressTimeout('pull of x', 0, async (signal) => {
    await new Promise((res) => setTimeout(res, 150))
    return signal.aborted
  })
  t.equal(r, false)
  await t.rejects(
    withProgressTimeout('pull of x', 1, async () => {
      throw new ShoalError('TAG_NOT_FOUND', 'tag not found: x')
    }),
    { code: 'TAG_NOT_FOUND', message: 'tag not found: x' },
  )
})
