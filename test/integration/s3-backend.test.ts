/**
 * What the S3 backend does beyond the shared contract, against an in-process s3rver: the
 * start-up check's one-line answers, retries through a flaky proxy, failed and aborted
 * multipart puts leaving nothing, credentials never printed, and an origin that refuses to
 * start on a bad bucket.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable, Writable } from 'node:stream'
import t from 'tap'
import { FsBackend } from '../../lib/backend/fs.js'
import { S3Backend } from '../../lib/backend/s3/index.js'
import { mapS3Error } from '../../lib/backend/s3/retry.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import { createLogger, silentLogger } from '../../lib/log/index.js'
import { OriginClient } from '../../lib/origin/client/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { blobKey, OriginServer } from '../../lib/origin/server/index.js'
import { S3RVER_CREDENTIALS, s3Config, startS3rver } from '../helpers/s3rver.js'
import { writtenBack } from '../helpers/writeback.js'

const SECRET = 'wrong-secret-that-must-never-be-printed'

const s3 = await startS3rver('shoal-s3-test')
t.teardown(() => s3.close())

async function codeOf(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p
    return { message: 'resolved' }
  } catch (err) {
    return { code: isShoalError(err) ? err.code : undefined, message: (err as Error).message }
  }
}

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const { port } = srv.address() as AddressInfo
  await new Promise((r) => srv.close(r))
  return port
}

t.test('check: one line naming the problem', async (t) => {
  await t.resolves(s3.backend().check(), 'an existing bucket with good credentials')
  const missing = await codeOf(s3.backend({ bucket: 'no-such-bucket' }).check())
  t.equal(missing.code, 'BACKEND_ERROR')
  t.match(missing.message, /no-such-bucket.*the bucket does not exist/, missing.message)
  // s3rver checks the access key id but not SigV4 signatures, so a wrong secret with the right
  // key id passes there (real S3 answers 403 SignatureDoesNotMatch: the same line).
  const denied = await codeOf(
    s3.backend({ credentials: { accessKeyId: 'NOBODY', secretAccessKey: SECRET } }).check(),
  )
  t.match(denied.message, /shoal-s3-test.*access denied: check the credentials/, denied.message)
  t.notMatch(denied.message, SECRET, 'the secret is not in the message')
  const port = await closedPort()
  const b = new S3Backend(s3Config(`http://127.0.0.1:${port}`, 'shoal-s3-test'))
  t.teardown(() => b.close())
  const unreachable = await codeOf(b.check())
  t.match(
    unreachable.message,
    new RegExp(`127\\.0\\.0\\.1:${port}.*cannot reach the S3 endpoint`),
    unreachable.message,
  )
})

t.test('errors from S3 name bucket and key, never the secret', async (t) => {
  const b = s3.backend({ credentials: { accessKeyId: 'NOBODY', secretAccessKey: SECRET }, maxAttempts: 1 })
  const err = await codeOf(b.put('blobs/k', Buffer.from('x')))
  t.equal(err.code, 'BACKEND_ERROR')
  t.match(err.message, /InvalidAccessKeyId.*check the S3 credentials/, err.message)
  t.match(err.message, /shoal-s3-test.*blobs\/k/, 'names bucket and key')
  t.notMatch(err.message, SECRET)
  // A server that echoes a credential back (some echo the key id) has it blanked out.
  const echo = mapS3Error(
    Object.assign(new Error(`bad key ${SECRET}`), {
      name: 'AccessDenied',
      $metadata: { httpStatusCode: 403 },
    }),
    'put b/k',
    [SECRET],
  )
  t.notMatch(echo.message, SECRET, 'an echoed secret is blanked out')
  t.match(echo.message, /\[redacted\]/)
})

t.test('a config with credentials logs and prints without them', async (t) => {
  const config = validateConfig(OriginConfigSchema, {
    backend: {
      type: 's3',
      bucket: 'b-1',
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: SECRET },
    },
    namespaces: [
      {
        namespace: 'x',
        backend: { type: 's3', bucket: 'b-2', credentials: { accessKeyId: 'A', secretAccessKey: SECRET } },
      },
    ],
  })
  let logged = ''
  const sink = new Writable({
    write(chunk, _enc, done) {
      logged += chunk.toString()
      done()
    },
  })
  createLogger({ destination: sink }).info({ config }, 'config')
  await new Promise((r) => setImmediate(r))
  t.match(logged, /b-1/, 'the config was logged')
  t.notMatch(logged, SECRET, 'the log holds no secret')
  t.notMatch(logged, 'AKIDEXAMPLE', 'nor the access key id')
  t.notMatch(
    `${JSON.stringify(config)} ${String(config.backend?.type === 's3' && config.backend.credentials)}`,
    SECRET,
  )
  const { inspect } = await import('node:util')
  t.notMatch(inspect(config, { depth: 10 }), SECRET, 'util.inspect too')
})

t.test('credentials from files', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-s3-creds-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'id'), 'S3RVER\n')
  await writeFile(join(dir, 'secret'), 'S3RVER\n')
  const files = { accessKeyIdFile: join(dir, 'id'), secretAccessKeyFile: join(dir, 'secret') }
  await t.resolves(s3.backend({ credentials: files }).check(), 'read and trimmed')
  t.throws(
    () => s3.backend({ credentials: { ...files, secretAccessKeyFile: join(dir, 'absent') } }),
    { code: 'CONFIG_INVALID', message: /secret access key file .*absent/ },
    'a missing file stops the start, naming its path',
  )
})

t.test('multipart: a wrong size or an abort leaves nothing', async (t) => {
  const b = s3.backend({ partSizeBytes: 5 << 20, uploadConcurrency: 2, prefix: 'mp' })
  const part = Buffer.alloc(5 << 20, 1)
  const short = await codeOf(b.put('k', Readable.from([part, part, part]), { size: 20 << 20 }))
  t.equal(short.code, 'SIZE_MISMATCH', short.message)
  t.equal(await b.stat('k'), undefined, 'a short multipart body leaves no object')
  const long = await codeOf(b.put('k', Readable.from([part, part, part]), { size: 12 << 20 }))
  t.equal(long.code, 'SIZE_MISMATCH', 'a long one is refused as soon as it overflows')
  t.equal(await b.stat('k'), undefined)

  const ac = new AbortController()
  const body = new PassThrough()
  const putting = codeOf(b.put('k', body, { signal: ac.signal }))
  body.write(part)
  body.write(part)
  await new Promise((r) => setTimeout(r, 50))
  ac.abort()
  const aborted = await putting
  t.equal(aborted.code, 'ABORTED', aborted.message)
  t.ok(body.destroyed, 'the body stream is destroyed')
  t.equal(await b.stat('k'), undefined, 'an aborted put leaves no object')
  await b.put('k', Readable.from([part, part, Buffer.from('tail')]))
  t.same(await b.stat('k'), { size: (10 << 20) + 4 }, 'a later put of the key works')
})

t.test('retries: 503s and dropped connections are retried, with a budget', async (t) => {
  let failNext = 0
  let seen = 0
  const target = new URL(s3.endpoint)
  // A proxy that fails the next `failNext` requests: alternately 503 SlowDown and a reset socket.
  const proxy: Server = createServer((req, res) => {
    seen++
    if (failNext > 0) {
      failNext--
      if (failNext % 2 === 0) {
        res.writeHead(503, { 'content-type': 'application/xml' })
        res.end('<Error><Code>SlowDown</Code><Message>slow down</Message></Error>')
      } else req.socket.destroy()
      return
    }
    const up = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers)
        r.pipe(res)
      },
    )
    req.pipe(up)
  })
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => proxy.close(r)))
  const endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
  const b = new S3Backend(s3Config(endpoint, s3.bucket, { prefix: 'retry', maxAttempts: 4 }))
  t.teardown(() => b.close())
  failNext = 3
  await b.put('x', Buffer.from('hello'))
  t.equal(seen, 4, 'three failures, then success')
  failNext = 3
  t.same(await b.stat('x'), { size: 5 }, 'stat retried too')
  failNext = 10
  const gaveUp = await codeOf(b.stat('x'))
  t.equal(gaveUp.code, 'BACKEND_ERROR', `gives up after maxAttempts: ${gaveUp.message}`)
  t.equal(failNext, 6, 'exactly 4 attempts')
  failNext = 0
  const ac = new AbortController()
  failNext = 1000
  const b2 = new S3Backend(s3Config(endpoint, s3.bucket, { maxAttempts: 20, retryBaseMs: 200 }))
  t.teardown(() => b2.close())
  setTimeout(() => ac.abort(), 100)
  const aborted = await codeOf(b2.stat('x', ac.signal))
  t.equal(aborted.code, 'ABORTED', 'an abort ends the backoff')
  failNext = 0
})

t.test('origin start fails with the check line on a missing bucket', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'shoal-s3-origin-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  const config = validateConfig(OriginConfigSchema, {
    dataDir,
    server: { host: '127.0.0.1', port: 0 },
    peer: { host: '127.0.0.1', port: 0 },
    backend: { type: 'fs', root: join(dataDir, 'fs') },
    namespaces: [
      {
        namespace: 'prod/.*',
        backend: {
          type: 's3',
          bucket: 'missing-bucket',
          endpoint: s3.endpoint,
          credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
        },
      },
    ],
  })
  const origin = new OriginServer(config, { logger: silentLogger() })
  t.teardown(() => origin.stop())
  const failed = await codeOf(origin.start())
  t.equal(failed.code, 'BACKEND_ERROR')
  t.match(failed.message, /missing-bucket.*the bucket does not exist/, failed.message)
  t.notMatch(failed.message, 'S3RVER', 'no credential in the message')
})

t.test('origin: namespaces route blobs to S3 or the fallback folder', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-s3-origin-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const s3Backend = {
    type: 's3',
    bucket: s3.bucket,
    prefix: 'origin',
    endpoint: s3.endpoint,
    credentials: S3RVER_CREDENTIALS,
  }
  const start = async (extra: Record<string, unknown>, sub: string) => {
    const config = validateConfig(OriginConfigSchema, {
      dataDir: join(dir, sub),
      server: { host: '127.0.0.1', port: 0 },
      namespaces: [{ namespace: 'prod-.*', backend: s3Backend }],
      ...extra,
    })
    const origin = new OriginServer(config, { logger: silentLogger(), tagLookup: { tagsOf: async () => [] } })
    await origin.start()
    t.teardown(() => origin.stop())
    return { client: new OriginClient(origin.url), registry: origin.registry }
  }
  const { client, registry } = await start({ backend: { type: 'fs', root: join(dir, 'fs') } }, 'a')
  const data = Buffer.from('a blob for the prod namespace')
  const digest = Digest.fromBuffer(data)
  await client.upload('prod-app', digest, Readable.from([data]), data.length)
  await client.upload('dev', digest, Readable.from([data]), data.length)
  // Acknowledged once the write-back mark is durable; the backends are written after that.
  await writtenBack(registry)
  const bucket = s3.backend({ prefix: 'origin' })
  t.same(await bucket.stat(blobKey('prod-app', digest)), { size: data.length }, 'prod-app went to S3')
  t.equal(await bucket.stat(blobKey('dev', digest)), undefined, 'dev did not')
  t.same(
    await new FsBackend(join(dir, 'fs')).stat(blobKey('dev', digest)),
    { size: data.length },
    'dev went to the folder',
  )

  // Without a fallback, a namespace no entry matches is refused, by name.
  const { client: strict } = await start({}, 'b')
  const refused = await codeOf(strict.upload('dev', digest, Readable.from([data]), data.length))
  t.equal(refused.code, 'BAD_REQUEST')
  t.match(refused.message, /no backend is configured for namespace "dev"/)
  t.same(
    await strict.stat('prod-app', digest),
    { size: data.length, pending: true },
    'prod-app is found in S3 by a fresh origin',
  )
})
