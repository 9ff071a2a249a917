/**
 * lib/http's defences on real sockets (docs/robustness.md): an over-limit body of any transfer
 * encoding is refused and the server keeps serving; an unread body ends its connection; a
 * connection where nothing moves is closed, unless a handler is still working on its answer;
 * connections are capped per client address and overall.
 */
import type { Socket } from 'node:net'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { HttpClient, type HttpLimits, HttpServer, readBody, sendJson } from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { type RawConnection, rawConnect as raw, within } from '../helpers/raw-http.js'

async function server(t: { teardown(fn: () => unknown): void }, limits: Partial<HttpLimits> = {}) {
  const s = new HttpServer({ name: 'test', logger: silentLogger(), limits })
  s.router.put('/echo', async ({ req, res }) =>
    sendJson(res, 200, { size: (await readBody(req, 4096)).length }),
  )
  // Settles `bodyRead` with how reading the body ended, so a test can see a handler released.
  let settle: (outcome: string) => void = () => {}
  const bodyRead = new Promise<string>((resolve) => {
    settle = resolve
  })
  s.router.put('/watched', async ({ req, res }) => {
    try {
      await readBody(req, 1 << 20)
      settle('read')
    } catch (err) {
      settle(`failed: ${(err as Error).message}`)
      throw err
    }
    sendJson(res, 200, {})
  })
  s.router.get('/slow', async ({ res }) => {
    await sleep(1500)
    sendJson(res, 200, { ok: true })
  })
  // 256 MiB, produced as it is read: far more than socket buffers hold.
  s.router.get('/big', async ({ res }) => {
    const chunk = Buffer.alloc(1 << 20)
    let left = 256
    res.writeHead(200, { 'content-length': 256 << 20 })
    await new Promise<void>((resolve, reject) => {
      Readable.from(
        (function* () {
          while (left-- > 0) yield chunk
        })(),
      )
        .pipe(res)
        .on('close', resolve)
        .on('error', reject)
    })
  })
  await s.start(0, '127.0.0.1')
  t.teardown(() => s.stop())
  return { s, client: new HttpClient(s.url, { name: 'test' }), bodyRead }
}

t.test('an over-limit body of any transfer encoding is refused and the server keeps serving', async (t) => {
  const { s, client } = await server(t)
  const bodies = {
    chunked: `PUT /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n1001\r\n${'0'.repeat(4097)}\r\n0\r\n\r\n`,
    'content-length, sent': `PUT /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4097\r\n\r\n${'0'.repeat(4097)}`,
    'content-length, declared only': 'PUT /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5000000\r\n\r\n',
  }
  for (const [name, request] of Object.entries(bodies)) {
    for (let i = 0; i < 3; i++) {
      const c = raw(s.port)
      await c.connected
      c.sock.write(request)
      t.ok(await within(c.closed, 10_000), `${name}: the server ends the connection after its answer`)
      t.match(c.received(), /^HTTP\/1.1 413 .*connection: close.*PAYLOAD_TOO_LARGE/is, `${name}: 413`)
    }
  }
  t.same(await client.json('GET', '/health'), { status: 'ok', component: 'test' }, 'still serving')
  t.same(await client.json('PUT', '/echo', { body: Buffer.alloc(100) }), { size: 100 })
})

t.test('a body the handler does not read ends the connection once answered', async (t) => {
  const { s } = await server(t, { idleTimeoutMs: 60_000 })
  const c = raw(s.port)
  await c.connected
  c.sock.write('GET /health HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n')
  t.ok(await within(c.closed, 10_000), 'closed well before the idle timeout (60 s)')
  t.match(c.received(), /^HTTP\/1.1 200 /, 'the answer arrived first')
})

t.test('an idle connection is closed; a handler thinking longer is not cut off', async (t) => {
  const { s, client, bodyRead } = await server(t, { idleTimeoutMs: 300 })
  const silent = raw(s.port)
  t.ok(await within(silent.closed, 10_000), 'a connection that sends nothing is closed')

  const stalled = raw(s.port)
  await stalled.connected
  stalled.sock.write('PUT /watched HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123456789')
  t.ok(await within(stalled.closed, 10_000), 'a stalled body is cut off')
  t.match(stalled.received(), /^HTTP\/1.1 408 .*REQUEST_TIMEOUT/s, 'with a 408 saying why')
  t.ok(await within(bodyRead, 10_000), 'the handler reading the body is released')
  t.match(await bodyRead, /^failed: the connection closed before the request body ended/)

  // Stops reading its 256 MiB answer for a while: the server drops it. (A paused socket does
  // not see the close, so it reads again later, and gets only what was sent before the drop.)
  const reader = raw(s.port)
  await reader.connected
  reader.sock.pause()
  reader.sock.write('GET /big HTTP/1.1\r\nhost: x\r\n\r\n')
  await sleep(2_000)
  reader.sock.resume()
  t.ok(await within(reader.closed, 20_000), 'the connection of a client that stopped reading is closed')
  t.ok(
    reader.received().length < 256 << 20,
    `the answer was cut off (${reader.received().length} bytes read)`,
  )

  t.same(
    await client.json('GET', '/slow'),
    { ok: true },
    'an answer slower than the idle timeout still comes',
  )
})

t.test('connections are capped per client address and overall', async (t) => {
  const { s, client } = await server(t, { maxConnectionsPerClient: 4, maxConnections: 6 })
  const held: RawConnection[] = []
  t.teardown(() => {
    for (const c of held) c.sock.destroy()
  })
  for (let i = 0; i < 4; i++) {
    held.push(raw(s.port))
    await held[i]?.connected
  }
  // The server counts a connection when it accepts it; a request round trip makes sure it has.
  held[0]?.sock.write('GET /health HTTP/1.1\r\nhost: x\r\n\r\n')
  while (!held[0]?.received().includes('"ok"')) await sleep(10)

  const fifth = raw(s.port)
  t.ok(await within(fifth.closed, 10_000), 'a fifth connection from the same address is closed')
  t.equal(fifth.received(), '', 'without an answer')

  // 127.0.0.0/8 is all loopback on Linux: 127.0.0.2 is another client address.
  const other: Socket[] = []
  t.teardown(() => {
    for (const sock of other) sock.destroy()
  })
  for (let i = 0; i < 2; i++) {
    const c = raw(s.port, '127.0.0.2')
    other.push(c.sock)
    await c.connected
    c.sock.write('GET /health HTTP/1.1\r\nhost: x\r\n\r\n')
    const answered = async () => {
      while (!c.received().includes('"ok"') && !c.sock.destroyed) await sleep(10)
    }
    await within(answered(), 10_000)
    t.match(c.received(), /^HTTP\/1.1 200 /, `connection ${i + 1} from another address is served`)
  }
  const seventh = raw(s.port, '127.0.0.3')
  t.ok(await within(seventh.closed, 10_000), 'past maxConnections every address is refused')

  for (const c of held) c.sock.destroy()
  await Promise.all(held.map((c) => c.closed))
  for (const sock of other) sock.destroy()
  let served = false
  for (let i = 0; i < 100 && !served; i++) {
    served = await client.json('GET', '/health').then(
      () => true,
      () => false,
    )
    if (!served) await sleep(20)
  }
  t.ok(served, 'closed connections free their places')
})

t.test('a client reads at most maxBytes of an answer, declared or streamed', async (t) => {
  const s = new HttpServer({ name: 'big', logger: silentLogger() })
  s.router.get('/declared', ({ res }) => sendJson(res, 200, { pad: 'x'.repeat(2048) }))
  s.router.get('/streamed', ({ res }) => {
    res.writeHead(200, { 'content-type': 'application/json' }) // chunked: no length up front
    for (let i = 0; i < 64; i++) res.write(Buffer.alloc(1024, 0x20))
    res.end('{}')
  })
  await s.start(0, '127.0.0.1')
  t.teardown(() => s.stop())
  const client = new HttpClient(s.url, { name: 'big' })
  await t.rejects(client.json('GET', '/declared', { maxBytes: 1024 }), {
    code: 'UPSTREAM_ERROR',
    message: /big's answer to GET \/declared is \d+ bytes, more than the limit of 1024/,
  })
  await t.rejects(client.buffer('GET', '/streamed', { maxBytes: 4096 }), {
    code: 'UPSTREAM_ERROR',
    message: /exceeds the limit of 4096 bytes/,
  })
  t.same(await client.json('GET', '/streamed'), {}, 'within the default limit it is read whole')
})
