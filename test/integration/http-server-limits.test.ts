/**
 * The server limits of docs/security.md on real sockets, with small configured limits: a
 * slowloris client (headers a byte at a time) and a slow-body client (a body trickling in just
 * fast enough to dodge the idle timeout) are cut off while a normal client keeps being served;
 * oversized headers are 431; past the connection cap new connections are closed while an
 * existing one completes its request; the per-client rate limit answers 429 with Retry-After
 * and recovers. Deadlines are generous ("eventually"), never measurements.
 */
import t from 'tap'
import {
  HttpClient,
  type HttpLimits,
  HttpServer,
  RateLimiter,
  rateLimited,
  readBody,
  sendJson,
} from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { rawConnect as raw, within } from '../helpers/raw-http.js'

async function server(
  t: { teardown(fn: () => unknown): void },
  limits: Partial<HttpLimits>,
  limiter?: RateLimiter,
) {
  const s = new HttpServer({ name: 'test', logger: silentLogger(), limits })
  s.router.put('/echo', async ({ req, res }) =>
    sendJson(res, 200, { size: (await readBody(req, 1 << 20)).length }),
  )
  let release: () => void = () => {}
  const held = new Promise<void>((r) => {
    release = r
  })
  s.router.get('/held', async ({ res }) => {
    await held
    sendJson(res, 200, { held: false })
  })
  const push = async ({ res }: { res: import('node:http').ServerResponse }) =>
    sendJson(res, 200, { pushed: true })
  s.router.put('/push', limiter ? rateLimited(limiter, push) : push)
  await s.start(0, '127.0.0.1')
  t.teardown(() => s.stop())
  return { s, client: new HttpClient(s.url, { name: 'test' }), release }
}

/** Writes `text` one byte every `ms` until the socket closes; resolves with the bytes written. */
function trickle(sock: import('node:net').Socket, text: string, ms: number): Promise<number> {
  return new Promise((resolve) => {
    let i = 0
    const timer = setInterval(() => {
      if (sock.destroyed || !sock.writable || i >= text.length) {
        clearInterval(timer)
        resolve(i)
        return
      }
      sock.write(text[i++]!)
    }, ms)
    sock.once('close', () => {
      clearInterval(timer)
      resolve(i)
    })
  })
}

t.test('a slowloris client is cut off at the headers timeout; others are served meanwhile', async (t) => {
  const { s, client } = await server(t, { headersTimeoutMs: 600, idleTimeoutMs: 60_000 })
  const c = raw(s.port)
  await c.connected
  // Each byte comes well inside the idle timeout: only the headers deadline can stop this.
  const sent = trickle(c.sock, `GET /health HTTP/1.1\r\nhost: x\r\n${'x-pad: y\r\n'.repeat(200)}\r\n`, 50)
  for (let i = 0; i < 5; i++)
    t.same(
      await client.json('GET', '/health'),
      { status: 'ok', component: 'test' },
      'a normal client is served',
    )
  t.ok(await within(c.closed, 20_000), 'the slowloris connection is closed')
  t.match(c.received(), /^HTTP\/1.1 408 .*REQUEST_TIMEOUT.*server.headersTimeoutMs/s, '408 naming the key')
  t.ok((await sent) < 2000, 'before it finished its headers')
})

t.test('headers over maxHeaderBytes are refused with 431', async (t) => {
  const { s, client } = await server(t, { maxHeaderBytes: 2048 })
  const c = raw(s.port)
  await c.connected
  c.sock.write(`GET /health HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(4096)}\r\n\r\n`)
  t.ok(await within(c.closed, 10_000), 'closed')
  t.match(c.received(), /^HTTP\/1.1 431 .*PAYLOAD_TOO_LARGE.*server.maxHeaderBytes/s)
  t.same(await client.json('GET', '/health'), { status: 'ok', component: 'test' }, 'still serving')
})

t.test('a body trickling in under the minimum rate is cut off; a normal upload is not', async (t) => {
  const { s, client } = await server(t, {
    minBodyBytesPerSec: 100,
    bodyRateWindowMs: 300,
    idleTimeoutMs: 60_000,
  })
  const c = raw(s.port)
  await c.connected
  c.sock.write('PUT /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n')
  // A byte every 50 ms (20 bytes/s): never idle, far under 100 bytes/s.
  const sent = trickle(c.sock, 'z'.repeat(100_000), 50)
  for (let i = 0; i < 5; i++)
    t.same(
      await client.json('PUT', '/echo', { body: Buffer.alloc(200_000) }),
      { size: 200_000 },
      'a normal upload',
    )
  t.ok(await within(c.closed, 20_000), 'the trickling connection is closed')
  t.match(c.received(), /^HTTP\/1.1 408 .*REQUEST_TIMEOUT.*server.minBodyBytesPerSec/s, '408 naming the key')
  t.ok((await sent) < 100_000, 'before its body was complete')
})

t.test(
  'past the connection cap new connections are closed while an existing request completes',
  async (t) => {
    const { s, client, release } = await server(t, { maxConnections: 2 })
    const first = raw(s.port)
    await first.connected
    first.sock.write('GET /held HTTP/1.1\r\nhost: x\r\n\r\n')
    const second = raw(s.port)
    await second.connected
    // Wait until the server counted both (the first's request is in its handler).
    const over = raw(s.port)
    t.ok(await within(over.closed, 10_000), 'a third connection is closed at accept')
    t.equal(over.received(), '', 'without an answer')
    release()
    const deadline = Date.now() + 10_000
    while (!/\{"held":false\}/.test(first.received()) && Date.now() < deadline)
      await new Promise((r) => setImmediate(r))
    t.match(first.received(), /^HTTP\/1.1 200 .*\{"held":false\}/s, 'the held request completes')
    first.sock.destroy()
    second.sock.destroy()
    await Promise.all([first.closed, second.closed])
    // The slots are free again once the server saw them close.
    let ok = false
    for (let i = 0; i < 100 && !ok; i++) {
      ok = await client.json('GET', '/health').then(
        () => true,
        () => false,
      )
    }
    t.ok(ok, 'new connections are served once others closed')
  },
)

t.test('the per-client rate limit answers 429 with Retry-After, then recovers', async (t) => {
  // The limiter's clock stands still until the test moves it: no race with the machine's speed.
  let now = 1_000_000
  const limiter = new RateLimiter('push', { perSecond: 2, burst: 3 }, 'rateLimits.push', () => now)
  const { client } = await server(t, {}, limiter)
  for (let i = 0; i < 3; i++)
    t.same(await client.json('PUT', '/push'), { pushed: true }, `push ${i + 1} of the burst`)
  const res = await client.request('PUT', '/push', { accept: [200, 429] })
  const body = JSON.parse((await res.body.text()) ?? '{}')
  t.equal(res.statusCode, 429)
  t.equal(res.headers['retry-after'], '1', 'Retry-After in whole seconds (a token in 500 ms)')
  t.equal(body.code, 'TOO_MANY_REQUESTS')
  t.match(body.message, /rateLimits.push/)
  t.equal(await pushStatus(client), 429, 'still refused')
  now += 500 // one token at 2/s
  t.equal(await pushStatus(client), 200, 'a push is accepted again once the bucket refilled')
  t.equal(await pushStatus(client), 429, 'and only one')
})

async function pushStatus(client: HttpClient): Promise<number> {
  const r = await client.request('PUT', '/push', { accept: [200, 429] })
  await r.body.text()
  return r.statusCode
}
