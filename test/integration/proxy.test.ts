import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { MemoryBackend } from '../../lib/backend/memory.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { startBuildIndex } from '../../lib/build-index/server/index.js'
import { loadConfig, validateConfig } from '../../lib/config/index.js'
import { Digest, Tag } from '../../lib/core/index.js'
import { ShoalError } from '../../lib/errors/index.js'
import { HttpClient, HttpServer, readBody, sendEmpty, sendJson } from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { OriginClient, OriginCluster } from '../../lib/origin/client/index.js'
import { ProxyClient } from '../../lib/proxy/client/index.js'
import { ProxyConfigSchema } from '../../lib/proxy/config.js'
import { startProxy } from '../../lib/proxy/server/index.js'

const logger = silentLogger()
const MiB = 1 << 20

/**
 * A fake origin implementing the protocol of lib/origin/client: locations, HEAD, and the
 * chunked upload (POST start, PATCH with Content-Range, PUT commit verifying sha256, DELETE).
 */
async function fakeOrigin(t: Test) {
  const blobs = new Map<string, Buffer>()
  const uploads = new Map<string, { digest: string; parts: Buffer[]; size: number }>()
  const requests: string[] = []
  const count = (what: string) => requests.filter((r) => r === what).length
  let nextUid = 1
  const server = new HttpServer({ name: 'fake-origin', logger })
  const addr = await server.start(0, '127.0.0.1')
  const self = `127.0.0.1:${addr.port}`
  const r = server.router
  r.get('/blobs/:digest/locations', ({ res }) => {
    requests.push('locations')
    sendJson(res, 200, { locations: [self] })
  })
  r.head('/namespace/:ns/blobs/:digest', ({ res, params }) => {
    requests.push('HEAD')
    const blob = blobs.get(params.digest as string)
    if (blob) sendEmpty(res, 200, { 'content-length': blob.length })
    else sendJson(res, 404, { code: 'BLOB_NOT_FOUND', message: 'not here' })
  })
  r.post('/namespace/:ns/blobs/:digest/uploads', ({ res, params }) => {
    requests.push('POST')
    if (blobs.has(params.digest as string))
      return sendJson(res, 409, { code: 'ALREADY_EXISTS', message: 'stored' })
    const uid = `u${nextUid++}`
    uploads.set(uid, { digest: params.digest as string, parts: [], size: 0 })
    sendJson(res, 200, { uid })
  })
  r.patch('/namespace/:ns/blobs/:digest/uploads/:uid', async ({ req, res, params }) => {
    requests.push('PATCH')
    const up = uploads.get(params.uid as string)
    if (!up) throw new ShoalError('UPLOAD_NOT_FOUND', 'no such upload')
    const [start, end] = String(req.headers['content-range']).split('-').map(Number)
    if (start !== up.size) throw new ShoalError('INVALID_RANGE', `expected offset ${up.size}, got ${start}`)
    const body = await readBody(req, 64 * MiB)
    if (body.length !== (end as number) - start + 1) throw new ShoalError('SIZE_MISMATCH', 'chunk length')
    up.parts.push(body)
    up.size += body.length
    sendEmpty(res, 204)
  })
  r.put('/namespace/:ns/blobs/:digest/uploads/:uid', ({ res, params }) => {
    requests.push('PUT')
    const up = uploads.get(params.uid as string)
    if (!up) throw new ShoalError('UPLOAD_NOT_FOUND', 'no such upload')
    const data = Buffer.concat(up.parts)
    const actual = `sha256:${createHash('sha256').update(data).digest('hex')}`
    if (actual !== up.digest)
      throw new ShoalError('DIGEST_MISMATCH', `uploaded bytes hash to ${actual}, not ${up.digest}`)
    uploads.delete(params.uid as string)
    blobs.set(up.digest, data)
    sendEmpty(res, 201)
  })
  r.delete('/namespace/:ns/blobs/:digest/uploads/:uid', ({ res, params }) => {
    requests.push('DELETE')
    if (!uploads.delete(params.uid as string)) throw new ShoalError('UPLOAD_NOT_FOUND', 'no such upload')
    sendEmpty(res, 204)
  })
  t.teardown(() => server.stop())
  return { blobs, uploads, requests, count, self }
}

async function setup(t: Test) {
  const origin = await fakeOrigin(t)
  const listen = { host: '127.0.0.1', port: 0 }
  const buildIndex = await startBuildIndex(
    validateConfig(BuildIndexConfigSchema, { server: listen, origins: [origin.self] }),
    {
      logger,
      backend: new MemoryBackend(),
    },
  )
  t.teardown(() => buildIndex.stop())
  const proxy = await startProxy(
    validateConfig(ProxyConfigSchema, {
      server: listen,
      origins: [origin.self],
      buildIndex: buildIndex.url,
      uploadChunkSize: MiB,
    }),
    { logger },
  )
  t.teardown(() => proxy.stop())
  return {
    origin,
    proxy,
    client: new ProxyClient(proxy.url),
    raw: new HttpClient(proxy.url, { name: 'proxy' }),
  }
}

function blob(size: number): { data: Buffer; digest: Digest } {
  const data = randomBytes(size)
  return { data, digest: Digest.fromBuffer(data) }
}

/** Streams `data` in 256 KiB pieces; `gate(offset)` may hold the stream back. */
function streamOf(data: Buffer, gate?: (offset: number) => Promise<void>): Readable {
  return Readable.from(
    (async function* () {
      for (let off = 0; off < data.length; off += 256 << 10) {
        if (gate) await gate(off)
        yield data.subarray(off, off + (256 << 10))
      }
    })(),
  )
}

async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new ShoalError('TIMEOUT', 'condition not met in time')
    await new Promise((r) => setTimeout(r, 5))
  }
}

t.test('config: {} is valid, files load, unknown keys are refused', async (t) => {
  const defaults = validateConfig(ProxyConfigSchema, {})
  t.equal(defaults.server.port, 15000)
  t.same(defaults.origins, ['127.0.0.1:15002'])
  t.equal(defaults.buildIndex, '127.0.0.1:15004')
  t.equal(defaults.uploadChunkSize, 16 * MiB)
  // The origin refuses PATCH bodies over its uploadChunkLimit (64 MiB by default).
  t.equal(validateConfig(ProxyConfigSchema, { uploadChunkSize: 64 * MiB }).uploadChunkSize, 64 * MiB)
  t.throws(() => validateConfig(ProxyConfigSchema, { uploadChunkSize: 64 * MiB + 1 }), {
    code: 'CONFIG_INVALID',
  })
  t.throws(() => validateConfig(ProxyConfigSchema, { uploadChunkSize: 1 << 30 }), {
    code: 'CONFIG_INVALID',
  })
  t.same(
    loadConfig(ProxyConfigSchema, { component: 'proxy', env: 'base' }),
    defaults,
    'base.yaml states exactly the defaults',
  )
  t.equal(loadConfig(ProxyConfigSchema, { component: 'proxy', env: 'development' }).server.host, '127.0.0.1')
  t.throws(() => validateConfig(ProxyConfigSchema, { buildindex: 'x' }), {
    code: 'CONFIG_INVALID',
    message: /unknown key "buildindex"/,
  })
})

t.test('push streams to the origin, dedupes, and verifies the digest', async (t) => {
  const { origin, client } = await setup(t)
  const { data, digest } = blob(5 * MiB + 123)

  t.equal(await client.hasBlob('default', digest), undefined, 'not stored yet')
  // Hold the pusher back after 2 MiB until the origin has seen a chunk: only passes if the
  // proxy forwards while it is still receiving, i.e. it does not buffer the whole blob.
  const gate = async (offset: number) => {
    if (offset === 2 * MiB) await until(() => origin.count('PATCH') >= 1)
  }
  const first = await client.pushBlob('default', digest, streamOf(data, gate), data.length)
  t.same(first, { existed: false, size: data.length })
  t.ok(origin.blobs.get(digest.toString())?.equals(data), 'the origin holds the exact bytes')
  t.equal(origin.count('PATCH'), 6, 'uploaded in 1 MiB chunks')
  t.equal(origin.count('PUT'), 1, 'one commit')
  t.same(await client.hasBlob('default', digest), { size: data.length })

  const posts = origin.count('POST')
  const patches = origin.count('PATCH')
  const heads = origin.count('HEAD')
  const again = streamOf(data)
  const second = await client.pushBlob('default', digest, again, data.length)
  t.same(second, { existed: true, size: data.length }, 'a second push is answered as existed')
  t.equal(origin.count('POST'), posts + 1, 'the upload start is the existence check')
  t.equal(origin.count('HEAD'), heads, 'and the only one')
  t.equal(origin.uploads.size, 0, 'no upload started')
  t.equal(origin.count('PATCH'), patches, 'no bytes sent to the origin')
  t.ok(again.destroyed, 'the unread source stream is closed')
  t.same(
    await client.hasBlob('default', digest),
    { size: data.length },
    'the proxy still answers after closing that connection',
  )

  const { data: other } = blob(MiB)
  const wrong = blob(10).digest
  await t.rejects(client.pushBlob('default', wrong, streamOf(other), other.length), {
    code: 'DIGEST_MISMATCH',
    status: 400,
  })
  t.equal(origin.blobs.has(wrong.toString()), false, 'nothing stored under the wrong digest')
  t.equal(origin.uploads.size, 0, 'the failed upload was cleaned up')
  t.equal(await client.hasBlob('default', wrong), undefined)
})

t.test('push edge cases: empty blob, missing length, aborted pusher, bad input', async (t) => {
  const { origin, client, raw } = await setup(t)
  const empty = blob(0)
  t.same(await client.pushBlob('default', empty.digest, Readable.from([]), 0), { existed: false, size: 0 })
  t.equal(origin.blobs.get(empty.digest.toString())?.length, 0)

  const { data, digest } = blob(MiB)
  const chunked = await raw
    .request('PUT', `/proxy/namespace/default/blobs/${digest}`, { body: streamOf(data) })
    .then(
      () => undefined,
      (e: unknown) => e,
    )
  t.match(chunked, { code: 'BAD_REQUEST', status: 411, message: /Content-Length is required/ })

  // The pusher goes away half-way: the origin upload is deleted, nothing is stored.
  const ac = new AbortController()
  const big = blob(4 * MiB)
  const gate = async (offset: number) => {
    if (offset === 2 * MiB) {
      await until(() => origin.count('PATCH') >= 1)
      ac.abort()
      await new Promise(() => {}) // never continue
    }
  }
  await t.rejects(
    client.pushBlob('default', big.digest, streamOf(big.data, gate), big.data.length, ac.signal),
    { code: 'ABORTED' },
  )
  await until(() => origin.count('DELETE') >= 1)
  t.equal(origin.uploads.size, 0, 'the half upload was deleted at the origin')
  t.equal(origin.blobs.has(big.digest.toString()), false)

  const tryRaw = (method: string, path: string) =>
    raw.request(method, path, { headers: { 'content-length': '0' }, body: '' }).then(
      () => undefined,
      (e: unknown) => e,
    )
  t.match(await tryRaw('PUT', '/proxy/namespace/default/blobs/sha256:nothex'), {
    code: 'INVALID_DIGEST',
    status: 400,
  })
  t.match(await tryRaw('PUT', `/proxy/namespace/..%2Fetc/blobs/${digest}`), {
    code: 'BAD_REQUEST',
    message: /invalid namespace/,
  })
  t.match(await tryRaw('HEAD', '/proxy/namespace/default/blobs/sha256:nothex'), { status: 400 })
})

t.test('tags through the proxy', async (t) => {
  const { client, origin } = await setup(t)
  const { data, digest } = blob(64 << 10)
  const tag = Tag.parse('192.168.1.1-/usr/local/data-交易数据.txt:v1')

  await t.rejects(client.putTag(tag, digest), { code: 'BLOB_NOT_FOUND', message: /push the blob first/ })
  await client.pushBlob('default', digest, Readable.from([data]), data.length)
  const put = await client.putTag(tag, digest)
  t.equal(put.tag, tag.toString())
  t.ok(put.digest.equals(digest))
  t.equal((await client.putTag(tag, digest, { ns: 'default' })).result, 'unchanged')
  t.ok((await client.getTag(tag)).equals(digest))

  const other = blob(10)
  origin.blobs.set(other.digest.toString(), other.data)
  await t.rejects(client.putTag(tag, other.digest), { code: 'TAG_CONFLICT', status: 409 })
  await t.rejects(client.putTag('h-/a/../b-f:v1', digest), { code: 'INVALID_TAG', status: 400 })

  await client.deleteTag(tag)
  await t.rejects(client.getTag(tag), { code: 'TAG_NOT_FOUND', message: `tag not found: ${tag}` })
  await t.rejects(client.deleteTag(tag), { code: 'TAG_NOT_FOUND' })
  t.ok(origin.blobs.has(digest.toString()), 'deleting a tag leaves the blob')
})

t.test('service endpoints and lifecycle', async (t) => {
  const { proxy, raw } = await setup(t)
  t.equal(await raw.status('GET', '/health'), 200)
  t.equal(await raw.status('GET', '/readiness'), 200)
  t.match((await raw.buffer('GET', '/metrics')).toString(), /shoal_proxy_blob_pushes_total/)
  const url = proxy.url
  await proxy.start()
  t.equal(proxy.url, url)
  await proxy.stop()
  await proxy.stop()
  t.throws(() => proxy.url, { code: 'UNAVAILABLE', message: 'proxy is not started' })

  // Readiness fails with a reason when build-index and origins are unreachable.
  const lonely = await startProxy(
    validateConfig(ProxyConfigSchema, {
      server: { host: '127.0.0.1', port: 0 },
      origins: ['127.0.0.1:1'],
      buildIndex: '127.0.0.1:1',
    }),
    { logger },
  )
  t.teardown(() => lonely.stop())
  const res = await new HttpClient(lonely.url, { name: 'proxy' }).request('GET', '/readiness', {
    accept: [503],
  })
  t.equal(res.statusCode, 503)
  t.match(await res.body.json(), { code: 'UNAVAILABLE', message: /build-index/ })
})

t.test('origin cluster: the owner is found past origins that are down', async (t) => {
  const origin = await fakeOrigin(t)
  const digest = Digest.fromHex('ab'.repeat(32))
  const built: string[] = []
  const cluster = new OriginCluster(['127.0.0.1:1', origin.self], (a) => {
    built.push(a)
    return new OriginClient(a)
  })
  t.equal(cluster.seeds.length, 2)
  const owner = await cluster.owner(digest)
  t.equal(owner.http.baseUrl, `http://${origin.self}`)
  t.equal(owner, cluster.seeds[1], 'the owner reuses the client of the configured origin')
  t.equal(cluster.clientFor(`http://${origin.self}/`), owner, 'one client per origin however spelt')
  t.same(built, ['127.0.0.1:1', origin.self])

  await t.rejects(new OriginCluster(['127.0.0.1:1']).owner(digest), {
    code: 'UNAVAILABLE',
    message: /no configured origin answered the locations of sha256:ab/,
  })
  t.throws(() => new OriginCluster([]), { code: 'CONFIG_INVALID' })

  const empty = new HttpServer({ name: 'empty-origin', logger })
  empty.router.get('/blobs/:digest/locations', ({ res }) => sendJson(res, 200, { locations: [] }))
  await empty.start(0)
  t.teardown(() => empty.stop())
  await t.rejects(new OriginCluster([empty.url, origin.self]).owner(digest), {
    code: 'UPSTREAM_ERROR',
    message: `origin ${empty.url} returned no locations for ${digest}`,
  })
})
