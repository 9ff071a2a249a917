/** The per-client token bucket (lib/http/rate-limit.ts) on a manual clock. */
import t from 'tap'
import { isShoalError } from '../../lib/errors/index.js'
import { RateLimiter } from '../../lib/http/index.js'

t.test('a burst, then the sustained rate, per client address', async (t) => {
  let now = 0
  const l = new RateLimiter('announce', { perSecond: 10, burst: 5 }, 'rateLimits.announce', () => now)
  for (let i = 0; i < 5; i++) t.equal(l.take('a'), 0, `burst ${i + 1}`)
  t.equal(l.take('a'), 100, 'the sixth waits for a token: 100 ms at 10/s')
  t.equal(l.take('b'), 0, 'another address has its own bucket')
  now += 50
  t.equal(l.take('a'), 50, 'half a token after 50 ms')
  now += 50
  t.equal(l.take('a'), 0, 'a token after 100 ms')
  t.equal(l.take('a'), 100)
  now += 60_000
  for (let i = 0; i < 5; i++) t.equal(l.take('a'), 0, 'a quiet client gets its burst back, not more')
  t.ok(l.take('a') > 0)
})

t.test('perSecond 0 turns the limit off', async (t) => {
  const l = new RateLimiter('push', { perSecond: 0, burst: 1 }, 'rateLimits.push')
  t.notOk(l.enabled)
  for (let i = 0; i < 1000; i++) if (l.take('a') !== 0) t.fail('refused')
  t.equal(l.tracked, 0, 'nothing tracked')
})

t.test('check() throws TOO_MANY_REQUESTS and sets Retry-After in whole seconds', async (t) => {
  const l = new RateLimiter('push', { perSecond: 0.5, burst: 1 }, 'rateLimits.push', () => 0)
  const headers: Record<string, string> = {}
  const req = { socket: { remoteAddress: '10.0.0.9' } } as never
  const res = { headersSent: false, setHeader: (k: string, v: string) => (headers[k] = v) } as never
  l.check(req, res)
  try {
    l.check(req, res)
    t.fail('not refused')
  } catch (err) {
    t.ok(isShoalError(err, 'TOO_MANY_REQUESTS'))
    t.match((err as Error).message, /10\.0\.0\.9.*0\.5\/s.*rateLimits\.push.*retry in 2 s/)
    t.same((err as { details: unknown }).details, { retryAfterSeconds: 2, limit: 'rateLimits.push' })
  }
  t.equal(headers['retry-after'], '2')
})

t.test('the table of clients is bounded: full buckets go first, then the oldest', async (t) => {
  let now = 0
  const l = new RateLimiter('announce', { perSecond: 1, burst: 2 }, 'k', () => now, 100)
  for (let i = 0; i < 100; i++) l.take(`c${i}`)
  t.equal(l.tracked, 100)
  now += 10_000 // every bucket is full again: the same as absent
  l.take('new')
  t.equal(l.tracked, 1, 'full buckets were forgotten')
  for (let i = 0; i < 150; i++) l.take(`flood${i}`)
  t.ok(l.tracked <= 100, `a flood of addresses stays within the bound (${l.tracked})`)
  // The newest addresses are still limited: their buckets were kept.
  l.take('flood149')
  t.ok(l.take('flood149') > 0, 'a recent client is still counted')
})
