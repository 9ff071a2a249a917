/**
 * Repair rate: how fast an origin joining the ring receives the blobs it now owns. Two origins
 * in this process on loopback (replicas 2, one fs backend): origin A takes N blobs of S bytes
 * while B is down (so only A holds them), then B starts; A's repair pass copies every blob to
 * B (B fetches it from A, verifying its sha256). Timed from A seeing B healthy to A counting
 * the last copy. Prints blobs/s and MB/s.
 *
 *   node --import tsx test/bench/repair-rate.ts [--blobs 200] [--size 1MiB] [--rate 100000] [--concurrency 4]
 *
 * --rate is repair.blobsPerSecond (the default config is 50), --concurrency repair.concurrency.
 */
import { randomFillSync } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { parseArgs } from 'node:util'
import { FsBackend } from '../../lib/backend/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest } from '../../lib/core/index.js'
import { ReservedListener } from '../../lib/lifecycle/index.js'
import { createLogger, silentLogger } from '../../lib/log/index.js'
import { OriginClient } from '../../lib/origin/client/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { OriginServer } from '../../lib/origin/server/index.js'
import { metricValue, until } from '../helpers/writeback.js'
import { formatBytes, parseSize } from './helpers.js'

const { values } = parseArgs({
  options: {
    blobs: { type: 'string', default: '200' },
    size: { type: 'string', default: '1MiB' },
    rate: { type: 'string', default: '100000' },
    concurrency: { type: 'string', default: '4' },
  },
})
const count = Number(values.blobs)
const size = parseSize(values.size as string)
const HOST = '127.0.0.1'
const HEALTH = { intervalMs: 100, timeoutMs: 300, failThreshold: 2, passThreshold: 1 }

// BENCH_LOG=<file>: the origins' logs (info), e.g. to see the repair passes.
const logger = process.env.BENCH_LOG
  ? createLogger({ level: 'info', destination: createWriteStream(process.env.BENCH_LOG) })
  : silentLogger()
const dir = await mkdtemp(join(tmpdir(), 'shoal-repair-bench-'))
const backend = new FsBackend(join(dir, 'backend'))
const listeners = [new ReservedListener('a', HOST, 0), new ReservedListener('b', HOST, 0)]
for (const l of listeners) await l.start()
const nodes = listeners.map((l) => `${HOST}:${l.port}`)
const origin = (i: number) =>
  new OriginServer(
    validateConfig(OriginConfigSchema, {
      log: { level: 'silent' },
      server: { host: HOST, port: 0 },
      dataDir: join(dir, `origin-${i}`),
      trackerUrl: 'http://tracker.test:15003',
      self: nodes[i],
      hashring: { nodes, replicas: 2, healthCheck: HEALTH },
      repair: {
        settleSeconds: 0,
        blobsPerSecond: Number(values.rate),
        concurrency: Number(values.concurrency),
      },
    }),
    {
      logger,
      backend,
      tagLookup: { tagsOf: async () => [] },
      listener: listeners[i]?.server,
    },
  )
const a = origin(0)
const b = origin(1)
try {
  await a.start()
  const healthy = (v: number) => async () =>
    (await metricValue(a.registry, 'shoal_origin_member_healthy', { member: nodes[1] as string })) === v
  await until('A finds B down', healthy(0), 30_000)
  process.stderr.write(`pushing ${count} blobs of ${formatBytes(size)} to A...\n`)
  const client = new OriginClient(a.url)
  const digests: Digest[] = []
  for (let i = 0; i < count; i++) {
    const data = randomFillSync(Buffer.allocUnsafe(size))
    const digest = Digest.fromBuffer(data)
    await client.upload('default', digest, Readable.from([data]), size, { chunkSize: 16 << 20 })
    digests.push(digest)
  }
  await until(
    'A wrote everything back',
    async () => (await metricValue(a.registry, 'shoal_origin_writeback_pending')) === 0,
    600_000,
  )
  await b.start()
  await until('A finds B healthy', healthy(1), 30_000)
  const started = process.hrtime.bigint()
  await until(
    'A copied every blob to B',
    async () => (await metricValue(a.registry, 'shoal_origin_repair_copied_total')) >= count,
    3_600_000,
  )
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  for (const d of digests) if (!(await b.store.stat(d))) throw new Error(`B lacks ${d}`)
  const mb = (count * size) / 1e6
  const line = {
    blobs: count,
    size: formatBytes(size),
    blobsPerSecondLimit: Number(values.rate),
    concurrency: Number(values.concurrency),
    seconds: Number(seconds.toFixed(2)),
    blobsPerSecond: Number((count / seconds).toFixed(1)),
    MBps: Number((mb / seconds).toFixed(1)),
  }
  process.stdout.write(`${JSON.stringify(line)}\n`)
} finally {
  await b.stop()
  await a.stop()
  await rm(dir, { recursive: true, force: true })
}
