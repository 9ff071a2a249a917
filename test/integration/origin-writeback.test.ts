/**
 * Write-back faults (issue 9), against real origins on loopback with the fs backend behind a
 * wrapper that fails on demand (test/helpers/flaky-backend.ts):
 *
 * - an origin restarted with pending write-backs: they complete;
 * - the backend down during a push (PushCLI through the proxy): the push succeeds, held on the
 *   origin, pulls are served from its cache, the outage is logged once, and the blob is
 *   written back when the backend returns.
 */
import { createHash } from 'node:crypto'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { type Backend, FsBackend } from '../../lib/backend/index.js'
import { push } from '../../lib/cli/push.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest } from '../../lib/core/index.js'
import { createLogger, type Logger, silentLogger } from '../../lib/log/index.js'
import { OriginClient } from '../../lib/origin/client/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { blobKey, OriginServer } from '../../lib/origin/server/index.js'
import { tempDir } from '../helpers/files.js'
import { FlakyBackend } from '../helpers/flaky-backend.js'
import { startPushFront } from '../helpers/herd.js'
import { metricValue, until, writtenBack } from '../helpers/writeback.js'

function originConfig(dataDir: string) {
  return validateConfig(OriginConfigSchema, {
    log: { level: 'silent' },
    server: { host: '127.0.0.1', port: 0 },
    dataDir,
    trackerUrl: 'http://tracker.test:15003',
    // Retries every ~1 s (backoff capped at 1 s), so the test sees several within its deadline.
    writeBack: { maxBackoffSeconds: 1 },
  })
}

async function startOrigin(
  t: Test,
  dataDir: string,
  backend: Backend,
  logger: Logger = silentLogger(),
): Promise<OriginServer> {
  const origin = new OriginServer(originConfig(dataDir), {
    logger,
    backend,
    tagLookup: { tagsOf: async () => [] },
  })
  await origin.start()
  t.teardown(() => origin.stop())
  return origin
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

async function backendBytes(backend: Backend, ns: string, digest: Digest): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of await backend.get(blobKey(ns, digest))) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

t.test('an origin restarted with pending write-backs: they complete', async (t) => {
  const dir = await tempDir(t)
  const dataDir = join(dir, 'origin')
  const fs = new FsBackend(join(dir, 'backend'))
  const flaky = new FlakyBackend(fs)
  flaky.allDown = true
  const first = await startOrigin(t, dataDir, flaky)
  const client = new OriginClient(first.url)

  const blobs = [0, 1, 2].map((i) => {
    const data = Buffer.alloc(200_000 + i * 1000, i + 1)
    data.write(`blob ${i}`)
    return { data, digest: Digest.fromBuffer(data) }
  })
  for (const b of blobs) {
    t.same(
      await client.upload('default', b.digest, Readable.from([b.data]), b.data.length, { chunkSize: 64_000 }),
      { existed: false },
      'pushed while the backend fails',
    )
  }
  t.equal(await metricValue(first.registry, 'shoal_origin_writeback_pending'), 3, 'three write-backs pending')
  t.equal((await readdir(join(dataDir, 'writeback'))).length, 3, 'one durable mark each')
  await until(
    'failed write-back attempts',
    async () =>
      (await metricValue(first.registry, 'shoal_origin_writeback_attempts_total', { result: 'failed' })) >= 3,
  )
  t.ok(
    (await metricValue(first.registry, 'shoal_origin_writeback_oldest_seconds')) >= 0,
    'the oldest is reported',
  )
  t.equal((await fetch(`${first.url}/readiness`)).status, 200, 'still ready while the backend is down')
  t.same((await fs.list('')).keys, [], 'nothing reached the backend')
  const mark = JSON.parse(
    await readFile(join(dataDir, 'writeback', `${blobs[0]?.digest.hex}-default.json`), 'utf8'),
  )
  t.match(
    mark,
    { ns: 'default', digest: blobs[0]?.digest.toString(), size: 200_000 },
    'the mark names the blob',
  )
  t.ok(mark.attempts >= 1, 'and counts the failed attempts')

  await first.stop()
  t.equal((await readdir(join(dataDir, 'writeback'))).length, 3, 'the marks survive the stop')

  const second = await startOrigin(t, dataDir, fs)
  await writtenBack(second.registry)
  for (const b of blobs) {
    t.equal(
      sha256(await backendBytes(fs, 'default', b.digest)),
      b.digest.hex,
      'in the backend, byte-identical',
    )
  }
  t.same(await readdir(join(dataDir, 'writeback')), [], 'the marks are gone')
  t.equal(await metricValue(second.registry, 'shoal_origin_writeback_pending'), 0, 'pending back to 0')
  t.equal(await metricValue(second.registry, 'shoal_origin_writeback_oldest_seconds'), 0)
  t.equal(
    await metricValue(second.registry, 'shoal_origin_writeback_attempts_total', { result: 'written' }),
    3,
  )
})

t.test(
  'the backend down during a push: the push succeeds (held on the origin) and is written back when it returns',
  async (t) => {
    const dir = await tempDir(t)
    const fs = new FsBackend(join(dir, 'backend'))
    const flaky = new FlakyBackend(fs)
    flaky.allDown = true
    const lines: Array<{ level: number; msg: string; written?: number }> = []
    const logger = createLogger({
      level: 'info',
      destination: { write: (s: string) => lines.push(JSON.parse(s)) },
    })
    const origin = await startOrigin(t, join(dir, 'origin'), flaky, logger)
    const { proxy } = await startPushFront(t, [origin.self])

    const file = join(dir, 'reference.bin')
    const data = Buffer.alloc(3 << 20)
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32BE(i, i)
    await writeFile(file, data)
    const pushed = await push({ srcPath: file, srcHost: 'build-1', dstHost: proxy.url })
    t.ok(pushed.uploaded, 'the push succeeds while the backend is down')
    t.equal(pushed.digest.hex, sha256(data))

    const pulled: Buffer[] = []
    for await (const c of await new OriginClient(origin.url).download('default', pushed.digest))
      pulled.push(c as Buffer)
    t.equal(sha256(Buffer.concat(pulled)), sha256(data), 'pulled from the origin cache meanwhile')
    await until(
      'several failed attempts',
      async () =>
        (await metricValue(origin.registry, 'shoal_origin_writeback_attempts_total', { result: 'failed' })) >=
        3,
    )
    const failing = lines.filter((l) => /write-back failing/.test(l.msg))
    t.equal(failing.length, 1, 'the outage is logged once, not per retry')
    t.equal(failing[0]?.level, 40, 'as a warning')
    t.equal(await metricValue(origin.registry, 'shoal_origin_writeback_pending'), 1)
    t.same((await fs.list('')).keys, [], 'not in the backend yet')

    flaky.allDown = false
    await writtenBack(origin.registry)
    t.equal(
      sha256(await backendBytes(fs, 'default', pushed.digest)),
      sha256(data),
      'written back, byte-identical',
    )
    await until('the recovery line', () => lines.some((l) => /write-back recovered/.test(l.msg)))
    const recovered = lines.filter((l) => /write-back recovered/.test(l.msg))
    t.equal(recovered.length, 1, 'the recovery is logged once')
    t.equal(recovered[0]?.level, 30, 'as info')
    t.equal(recovered[0]?.written, 1, 'with how many blobs were written')
  },
)

t.test('a DELETE of a blob waiting for write-back cancels it: it never reaches the backend', async (t) => {
  const dir = await tempDir(t)
  const dataDir = join(dir, 'origin')
  const fs = new FsBackend(join(dir, 'backend'))
  const flaky = new FlakyBackend(fs)
  const blobOf = (text: string) => {
    const data = Buffer.from(text)
    const digest = Digest.fromBuffer(data)
    return { data, digest, key: blobKey('default', digest) }
  }
  const deleted = blobOf('a blob pushed by mistake while the backend was down')
  const witness = blobOf('a blob the backend keeps refusing: its retries pace the test')
  let refused = new Set([deleted.key, witness.key])
  flaky.down = (k) => refused.has(k)
  const origin = await startOrigin(t, dataDir, flaky)
  const client = new OriginClient(origin.url)
  for (const b of [deleted, witness])
    await client.upload('default', b.digest, Readable.from([b.data]), b.data.length)
  const tries = (key: string) => flaky.putAttempts.get(key) ?? 0
  await until('a failed write-back of the blob', () => tries(deleted.key) >= 1)

  refused = new Set([witness.key]) // the delete reaches the backend; the write-back is cancelled first
  await client.deleteBlob('default', deleted.digest)
  t.equal(
    await metricValue(origin.registry, 'shoal_origin_writeback_pending'),
    1,
    'only the other one pending',
  )
  t.same(
    await readdir(join(dataDir, 'writeback')),
    [`${witness.digest.hex}-default.json`],
    'its mark is gone',
  )
  t.equal(await client.stat('default', deleted.digest), undefined, 'the blob is gone')
  const before = tries(deleted.key)
  // Both are retried at the same pace (every 0.5 to 1 s: backoff capped at 1 s, with jitter):
  // two more tries of the other one take over 1 s, time for at least one of the deleted one
  // had it not been cancelled.
  const witnessed = tries(witness.key)
  await until('two more write-back attempts of the other blob', () => tries(witness.key) >= witnessed + 2)
  t.equal(tries(deleted.key), before, 'the deleted blob was not tried again')
  t.equal(await fs.stat(deleted.key), undefined, 'and the backend does not have it')
})
