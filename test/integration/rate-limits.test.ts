/**
 * The per-client rate limits of each daemon on real sockets (docs/security.md): past its burst a
 * client gets 429 TOO_MANY_REQUESTS with Retry-After naming the config key, before anything is
 * done for it; once its bucket refills it is served again (polled with a generous deadline).
 */

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { get as httpGet } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { pushDirectory } from '../../lib/cli/dir-push.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest, Tag } from '../../lib/core/index.js'
import { clientKey, HttpClient } from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { OriginServer } from '../../lib/origin/server/index.js'
import { ProxyConfigSchema } from '../../lib/proxy/config.js'
import { startProxy } from '../../lib/proxy/server/index.js'
import { encodeBytes } from '../../lib/tracker/client/tracker-client.js'
import { TrackerConfigSchema } from '../../lib/tracker/config.js'
import { startTracker } from '../../lib/tracker/server/index.js'
import { tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'

const logger = silentLogger()
const listen = { host: '127.0.0.1', port: 0 }
const limit = { perSecond: 5, burst: 2 }

/** Sends `send` until it is refused; checks the refusal; then polls until it is served again. */
async function burstThenRecover(
  t: Test,
  key: string,
  send: () => Promise<{ status: number; retryAfter?: string; body: string }>,
) {
  for (let i = 0; i < limit.burst; i++) t.not((await send()).status, 429, `request ${i + 1} of the burst`)
  const refused = await send()
  t.equal(refused.status, 429, 'past the burst: 429')
  t.match(refused.retryAfter, /^[1-9][0-9]*$/, 'Retry-After in seconds')
  t.match(JSON.parse(refused.body), {
    code: 'TOO_MANY_REQUESTS',
    message: new RegExp(key.replace('.', '\\.')),
  })
  const deadline = Date.now() + 15_000
  let status = 429
  while (status === 429 && Date.now() < deadline) {
    status = (await send()).status
    if (status === 429) await new Promise((r) => setTimeout(r, 50))
  }
  t.not(status, 429, 'served again once the bucket refilled')
}

function sender(base: string, method: string, path: string, body?: Buffer) {
  const http = new HttpClient(base, { name: 'test' })
  return async () => {
    const res = await http.request(method, path, {
      body: body ?? null,
      accept: [200, 201, 202, 400, 404, 409, 429, 500, 502, 503],
    })
    const retry = res.headers['retry-after']
    return {
      status: res.statusCode,
      retryAfter: typeof retry === 'string' ? retry : undefined,
      body: await res.body.text(),
    }
  }
}

t.test('tracker: announces past rateLimits.announce', async (t) => {
  const tracker = await startTracker(
    validateConfig(TrackerConfigSchema, { server: listen, rateLimits: { announce: limit } }),
    { logger },
  )
  t.teardown(() => tracker.stop())
  const q = `info_hash=${encodeBytes(Buffer.alloc(20, 1))}&peer_id=${encodeBytes(Buffer.alloc(20, 2))}&port=6881&left=0&compact=1`
  await burstThenRecover(t, 'rateLimits.announce', sender(tracker.url, 'GET', `/announce?${q}`))
})

t.test('origin: upload starts past rateLimits.push', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-ratelimit-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const origin = new OriginServer(
    validateConfig(OriginConfigSchema, {
      log: { level: 'silent' },
      server: listen,
      dataDir: join(dir, 'data'),
      backend: { type: 'fs', root: join(dir, 'backend') },
      trackerUrl: 'http://tracker.test:15003',
      rateLimits: { push: limit },
    }),
    { logger, tagLookup: { tagsOf: async () => [] } },
  )
  await origin.start()
  t.teardown(() => origin.stop())
  let n = 0
  // A different blob each time: the limit is on the client, not on one digest.
  await burstThenRecover(t, 'rateLimits.push', () => {
    const digest = Digest.fromBuffer(Buffer.from(`blob ${n++}`))
    return sender(origin.url, 'POST', `/namespace/ns/blobs/${digest}/uploads`)()
  })
})

t.test('proxy: blob pushes past rateLimits.push, refused before the body is read', async (t) => {
  // No origin listens: a push under the limit fails later (503), one over it never gets that far.
  const proxy = await startProxy(
    validateConfig(ProxyConfigSchema, {
      server: listen,
      origins: ['127.0.0.1:9'],
      buildIndex: '127.0.0.1:9',
      rateLimits: { push: limit },
    }),
    { logger },
  )
  t.teardown(() => proxy.stop())
  const body = Buffer.from('hello')
  const digest = Digest.fromBuffer(body)
  await burstThenRecover(
    t,
    'rateLimits.push',
    sender(proxy.url, 'PUT', `/proxy/namespace/ns/blobs/${digest}`, body),
  )
})

t.test("a directory push waits out the proxy's 429s and completes", async (t) => {
  const base = await tempDir(t)
  // One push a second after the first: most of this push's PUTs are refused at least once.
  const herd = await startTestHerd(t, base, { proxy: { rateLimits: { push: { perSecond: 1, burst: 1 } } } })
  const src = join(base, 'src', 'tree')
  await mkdir(src, { recursive: true })
  for (let i = 0; i < 4; i++) await writeFile(join(src, `f${i}.txt`), `distinct content ${i}\n`)
  const pushed = await pushDirectory({
    srcPath: src,
    tag: Tag.from({ srcHost: 'h', srcDir: join(base, 'src'), fileName: 'tree', version: 'v1' }),
    dstHost: herd.urls.proxy,
    concurrency: 4,
  })
  t.equal(pushed.files, 4)
  t.equal(pushed.newFiles, 4, 'every content uploaded, none refused for good')
})

/** GET `path` from the source address `localAddress`: its status. */
function getFrom(base: string, path: string, localAddress: string): Promise<number> {
  const { hostname, port } = new URL(base)
  return new Promise((resolve, reject) => {
    const req = httpGet({ host: hostname, port, path, localAddress, agent: false }, (res) => {
      res.resume()
      res.once('end', () => resolve(res.statusCode ?? 0))
    })
    req.once('error', reject)
  })
}

t.test('tracker: the configured origins are never limited; other addresses are', async (t) => {
  const tracker = await startTracker(
    validateConfig(TrackerConfigSchema, {
      server: listen,
      rateLimits: { announce: limit },
      origins: [{ peer: '127.0.0.2:15001', http: '127.0.0.2:15002' }],
    }),
    { logger },
  )
  t.teardown(() => tracker.stop())
  const q = `info_hash=${encodeBytes(Buffer.alloc(20, 1))}&peer_id=${encodeBytes(Buffer.alloc(20, 3))}&port=15001&left=0&compact=1`
  const fromOrigin: number[] = []
  for (let i = 0; i < 3 * limit.burst; i++)
    fromOrigin.push(await getFrom(tracker.url, `/announce?${q}`, '127.0.0.2'))
  t.same(
    new Set(fromOrigin),
    new Set([200]),
    `${fromOrigin.length} announces from the origin's address, all answered`,
  )
  const other: number[] = []
  for (let i = 0; i < limit.burst + 2; i++)
    other.push(await getFrom(tracker.url, `/announce?${q}`, '127.0.0.3'))
  t.equal(other.filter((s) => s === 429).length, 2, 'another address: limited past its burst')
})

t.test('clientKey: what one client is', async (t) => {
  t.equal(clientKey('10.1.2.3'), '10.1.2.3')
  t.equal(clientKey('::ffff:10.1.2.3'), '10.1.2.3', 'IPv4-mapped IPv6 as its IPv4')
  t.equal(clientKey('::ffff:127.0.0.1'), '127.0.0.1')
  t.equal(clientKey('::1'), '::1', 'IPv6 loopback is one client')
  t.equal(clientKey('2001:db8:1:2:a:b:c:d'), '2001:db8:1:2::/64')
  t.equal(clientKey('2001:db8:1:2::99'), '2001:db8:1:2::/64', 'the same /64, compressed')
  t.equal(clientKey('2001:0db8:0:0002::1'), '2001:db8:0:2::/64', 'leading zeros dropped')
  t.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64', ':: inside the prefix')
  t.not(clientKey('2001:db8:1:3::1'), clientKey('2001:db8:1:2::1'), 'another /64 is another client')
  t.equal(clientKey(undefined), '?')
})
