/** lib/http on real sockets: routing, error mapping, body limits and timeouts, the client. */
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { ShoalError } from '../../lib/errors/index.js'
import { HttpClient, HttpServer, readBody, sendJson, urlPath } from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { counter, createRegistry } from '../../lib/metrics/index.js'

async function server(
  t: { teardown(fn: () => unknown): void },
  opts: { limits?: { idleTimeoutMs?: number } } = {},
) {
  let ready = false
  const registry = createRegistry('test')
  counter(registry, 'shoal_test_events_total', 'events').inc(3)
  const s = new HttpServer({
    name: 'test',
    logger: silentLogger(),
    registry,
    readiness: () => {
      if (!ready) throw new ShoalError('UNAVAILABLE', 'warming up')
    },
    ...opts,
  })
  s.router.get('/tags/:tag', ({ res, params }) => sendJson(res, 200, { tag: params.tag }))
  s.router.put('/echo', async ({ req, res }) =>
    sendJson(res, 200, { size: (await readBody(req, 1024)).length }),
  )
  s.router.get('/slow', async ({ res }) => {
    await sleep(600)
    sendJson(res, 200, { ok: true })
  })
  s.router.get('/boom', () => {
    throw new ShoalError('TAG_CONFLICT', 'already points elsewhere')
  })
  await s.start(0, '127.0.0.1')
  t.teardown(() => s.stop())
  return { s, client: new HttpClient(s.url, { name: 'test' }), setReady: () => (ready = true) }
}

t.test('routing decodes one segment at a time; errors are typed JSON', async (t) => {
  const { client } = await server(t)
  const tag = 'h-/a/b-交易.txt:v1'
  t.same(await client.json('GET', urlPath`/tags/${tag}`), { tag }, 'an encoded "/" stays inside its segment')
  await t.rejects(client.json('GET', '/nowhere'), { code: 'NOT_FOUND', status: 404 })
  await t.rejects(client.json('DELETE', '/tags/x'), { code: 'METHOD_NOT_ALLOWED', status: 405 })
  await t.rejects(client.json('GET', '/tags/%E0%A4%A'), { code: 'BAD_REQUEST', message: /percent-encoding/ })
  await t.rejects(client.json('GET', '/boom'), {
    code: 'TAG_CONFLICT',
    status: 409,
    message: 'already points elsewhere',
  })
  t.equal(await client.status('HEAD', urlPath`/tags/${tag}`), 200, 'HEAD falls back to GET')
})

t.test('health, readiness and metrics', async (t) => {
  const { client, setReady } = await server(t)
  t.same(await client.json('GET', '/health'), { status: 'ok', component: 'test' })
  await t.rejects(client.json('GET', '/readiness'), { code: 'UNAVAILABLE', message: /warming up/ })
  setReady()
  t.same(await client.json('GET', '/readiness'), { status: 'ready', component: 'test' })
  const metrics = (await client.buffer('GET', '/metrics')).toString()
  t.match(
    metrics,
    /shoal_test_events_total\{component="test"\} 3/,
    "Prometheus text from the daemon's own registry",
  )
})

t.test('bodies are bounded; a stalled body is cut off; a slow answer is not', async (t) => {
  const { s, client } = await server(t, { limits: { idleTimeoutMs: 200 } })
  t.same(await client.json('PUT', '/echo', { body: Buffer.alloc(100) }), { size: 100 })
  await t.rejects(client.json('PUT', '/echo', { body: Buffer.alloc(2048) }), { code: 'PAYLOAD_TOO_LARGE' })

  // Declares 1000 bytes, sends 10, then stalls: the server closes the socket.
  const closed = await new Promise<number>((resolve) => {
    const started = Date.now()
    const sock = connect(s.port, '127.0.0.1', () => {
      sock.write('PUT /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123456789')
    })
    sock.on('error', () => {})
    sock.resume() // reads the 408 answer, so the close that follows it is seen
    sock.on('close', () => resolve(Date.now() - started))
  })
  t.ok(closed < 3000, `stalled upload closed after ${closed} ms`)

  t.same(
    await client.json('GET', '/slow'),
    { ok: true },
    'a handler thinking longer than the body timeout still answers',
  )
})

t.test('start and stop are idempotent; the client names an unreachable service', async (t) => {
  const s = new HttpServer({ name: 'idem', logger: silentLogger() })
  t.throws(() => s.url, { code: 'UNAVAILABLE' })
  const [a, b] = await Promise.all([s.start(0), s.start(0)])
  t.equal(a.port, b.port, 'a second start returns the same address')
  const url = s.url
  await s.stop()
  await s.stop()
  await t.rejects(new HttpClient(url, { name: 'idem' }).json('GET', '/health'), {
    code: 'UNAVAILABLE',
    message: `cannot reach the idem at ${new URL(url).host} (ECONNREFUSED: nothing listens there); is it running?`,
  })
})

t.test('the abort signal: a client that goes away or a server that stops aborts the handler', async (t) => {
  const s = new HttpServer({ name: 'test', logger: silentLogger() })
  const started = new Set<string>()
  const aborted = new Set<string>()
  const until = async (what: string, ok: () => boolean) => {
    const deadline = Date.now() + 10_000
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await sleep(10)
    }
  }
  const waitForAbort = (signal: AbortSignal, what: string) =>
    new Promise<void>((resolve) => {
      if (signal.aborted) resolve()
      signal.addEventListener('abort', () => resolve(), { once: true })
    }).then(() => {
      aborted.add(what)
    })
  // Reads the signal only after the client is gone: it must come back already aborted.
  s.router.get('/late', async (ctx) => {
    const closed = new Promise<void>((resolve) => ctx.req.socket.once('close', () => resolve()))
    started.add('late')
    await closed
    await waitForAbort(ctx.signal, 'late')
  })
  s.router.get('/early', async ({ signal }) => {
    started.add('early')
    await waitForAbort(signal, 'early')
  })
  s.router.get('/hold', async ({ signal }) => {
    started.add('hold')
    await waitForAbort(signal, 'hold')
  })
  s.router.get('/q', ({ res, query }) => sendJson(res, 200, { a: query.get('a'), all: query.getAll('b') }))
  await s.start(0, '127.0.0.1')
  t.teardown(() => s.stop())
  const client = new HttpClient(s.url, { name: 'test' })
  t.same(await client.json('GET', '/q?a=x%20y&b=1&b=2'), { a: 'x y', all: ['1', '2'] }, 'query parsed on use')

  const { port } = new URL(s.url)
  for (const path of ['early', 'late']) {
    const sock = connect(Number(port), '127.0.0.1')
    sock.on('error', () => {})
    sock.write(`GET /${path} HTTP/1.1\r\nhost: x\r\n\r\n`)
    await until(`${path} to start`, () => started.has(path))
    sock.destroy()
    await until(`${path} to be aborted`, () => aborted.has(path))
  }
  t.same([...aborted].sort(), ['early', 'late'], 'both handlers were told the client went away')

  const sock = connect(Number(port), '127.0.0.1')
  sock.on('error', () => {})
  sock.write('GET /hold HTTP/1.1\r\nhost: x\r\n\r\n')
  await until('hold to start', () => started.has('hold'))
  await s.stop()
  await until('hold to be aborted', () => aborted.has('hold'))
  t.ok(aborted.has('hold'), 'stop() aborts a handler that holds the signal')
  sock.destroy()
})
