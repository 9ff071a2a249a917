/**
 * Open uploads are bounded and shared (hardening items 2 and 7), through real HTTP against a
 * real origin (and a real proxy and build-index for the concurrent pushes): caps per client and
 * overall answer 429, an idle upload expires, and concurrent uploads of one digest send its
 * bytes once.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { Agent, request } from 'undici'
import { validateConfig } from '../../lib/config/index.js'
import { Digest } from '../../lib/core/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { OriginClient } from '../../lib/origin/client/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { OriginServer } from '../../lib/origin/server/index.js'
import { ProxyClient } from '../../lib/proxy/client/index.js'
import { startPushFront } from '../helpers/herd.js'

const logger = silentLogger()
const listen = { host: '127.0.0.1', port: 0 }
const noTags = { tagsOf: async () => [] }

async function startOrigin(t: Test, config: Record<string, unknown> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-uploads-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const origin = new OriginServer(
    validateConfig(OriginConfigSchema, {
      log: { level: 'silent' },
      server: listen,
      dataDir: join(dir, 'data'),
      backend: { type: 'fs', root: join(dir, 'backend') },
      trackerUrl: 'http://tracker.test:15003',
      ...config,
    }),
    { logger, tagLookup: noTags },
  )
  await origin.start()
  t.teardown(() => origin.stop())
  return origin
}

const digestOf = (text: string) => Digest.fromBuffer(Buffer.from(text))

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
  return line ? Number(line.split(' ').at(-1)) : 0
}

async function waitFor(what: string, fn: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const until = Date.now() + ms
  while (!(await fn())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

/** Sends 8 KiB, then holds the rest (in 64 KiB pieces) until `gate` opens. */
function gated(data: Buffer, gate: Promise<void>, pulled?: () => void): Readable {
  return Readable.from(
    (async function* () {
      const first = 8 << 10
      yield data.subarray(0, first)
      pulled?.()
      await gate
      for (let at = first; at < data.length; at += 64 << 10) yield data.subarray(at, at + (64 << 10))
    })(),
  )
}

function opener() {
  let open!: () => void
  const gate = new Promise<void>((r) => {
    open = r
  })
  return { gate, open }
}

t.test('open uploads are capped per client and overall: 429 over a cap', async (t) => {
  const origin = await startOrigin(t, { maxOpenUploads: 4, maxOpenUploadsPerClient: 3 })
  // A second client address: Linux routes all of 127/8 to the loopback interface.
  const other = new Agent({ localAddress: '127.0.0.2' })
  t.teardown(() => other.close())
  const post = async (n: number, dispatcher?: Agent) => {
    const res = await request(`${origin.url}/namespace/default/blobs/${digestOf(`blob ${n}`)}/uploads`, {
      method: 'POST',
      dispatcher,
    })
    return { status: res.statusCode, json: () => res.body.json(), body: { cancel: () => res.body.dump() } }
  }
  const uids: string[] = []
  for (let i = 0; i < 3; i++) {
    const res = await post(i)
    t.equal(res.status, 202, `upload ${i} of this client`)
    uids.push(((await res.json()) as { uid: string }).uid)
  }
  const over = await post(3)
  t.equal(over.status, 429, 'one more from the same client')
  const body = (await over.json()) as { code: string; message: string }
  t.equal(body.code, 'TOO_MANY_REQUESTS')
  t.match(body.message, /maxOpenUploadsPerClient/, 'names the limit')

  const fromOther = await post(4, other)
  t.equal(fromOther.status, 202, 'another client still may')
  await fromOther.body?.cancel()
  const full = await post(5, other)
  t.equal(full.status, 429, 'until the origin-wide cap')
  t.match(((await full.json()) as { message: string }).message, /maxOpenUploads\b/)

  const aborted = await fetch(
    `${origin.url}/namespace/default/blobs/${digestOf('blob 0')}/uploads/${uids[0]}`,
    { method: 'DELETE' },
  )
  t.equal(aborted.status, 204)
  const again = await post(6)
  t.equal(again.status, 202, 'an aborted upload frees its slot')
  await again.body?.cancel()
})

t.test('an idle upload expires: UPLOAD_NOT_FOUND, its file purged, its slot free', async (t) => {
  const origin = await startOrigin(t, { uploadTtlSeconds: 1, maxOpenUploadsPerClient: 1 })
  const data = Buffer.from('expiring')
  const digest = Digest.fromBuffer(data)
  const base = `${origin.url}/namespace/default/blobs/${digest}/uploads`
  const { uid } = (await (await fetch(base, { method: 'POST' })).json()) as { uid: string }
  const dir = join(origin.store.root, 'uploads')
  t.same(await readdir(dir), [uid])
  // The periodic purge (every ttl/4, at least 1 s) removes the file with no request at all.
  await waitFor('the purge', async () => (await readdir(dir)).length === 0)
  const late = await fetch(`${base}/${uid}`, {
    method: 'PATCH',
    headers: { 'content-range': `0-${data.length - 1}` },
    body: data,
  })
  t.equal(late.status, 404)
  t.equal(((await late.json()) as { code: string }).code, 'UPLOAD_NOT_FOUND')
  const next = await fetch(base, { method: 'POST' })
  t.equal(next.status, 202, 'the expired upload no longer counts against the cap')
  const second = ((await next.json()) as { uid: string }).uid
  // Expiry is also checked on each request, whatever the purge did.
  await new Promise((r) => setTimeout(r, 1100))
  const commit = await fetch(`${base}/${second}`, { method: 'PUT' })
  t.equal(commit.status, 404)
  t.match(((await commit.json()) as { message: string }).message, /expired|does not exist/)
})

t.test('a second upload of a digest waits for the first and dedupes', async (t) => {
  const origin = await startOrigin(t)
  const client = new OriginClient(origin.url)
  const data = Buffer.alloc(1 << 20, 7)
  const digest = Digest.fromBuffer(data)
  const { gate, open } = opener()
  const first = client.upload('default', digest, gated(data, gate), data.length, { chunkSize: 8 << 10 })
  await waitFor(
    'the first chunk',
    async () => (await metric(origin.url, 'shoal_origin_upload_received_bytes_total')) > 0,
  )
  let secondDone = false
  const second = client
    .upload('default', digest, Readable.from([data]), data.length)
    .finally(() => (secondDone = true))
  await new Promise((r) => setTimeout(r, 200))
  t.notOk(secondDone, 'the second waits while the first is sending')
  open()
  t.same(await first, { existed: false })
  t.same(await second, { existed: true }, 'then finds the blob stored')
  t.equal(
    await metric(origin.url, 'shoal_origin_upload_received_bytes_total'),
    data.length,
    'bytes sent once',
  )
})

t.test('20 concurrent pushes of one file through the proxy upload it once, and all succeed', async (t) => {
  const origin = await startOrigin(t)
  const { proxy } = await startPushFront(t, [origin.url])
  const data = Buffer.alloc(4 << 20)
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i)
  const digest = Digest.fromBuffer(data)
  const client = new ProxyClient(proxy.url)
  // Every push is on the wire before any can finish: after a first small piece (which the
  // socket takes whether or not the proxy reads) each body is held until all 20 were pulled.
  const N = 20
  const { gate, open } = opener()
  let pulled = 0
  const pushes = Array.from({ length: N }, () =>
    client.pushBlob(
      'default',
      digest,
      gated(data, gate, () => {
        if (++pulled === N) open()
      }),
      data.length,
    ),
  )
  const results = await Promise.all(pushes)
  t.equal(results.length, N, 'all 20 pushes succeed')
  t.equal(results.filter((r) => !r.existed).length, 1, 'one uploaded, the others deduped')
  t.equal(await metric(origin.url, 'shoal_origin_uploads_committed_total'), 1, 'one commit')
  t.equal(await metric(origin.url, 'shoal_origin_uploaded_bytes_total'), data.length, 'one blob of bytes')
  t.equal(await metric(origin.url, 'shoal_origin_upload_received_bytes_total'), data.length)
})
