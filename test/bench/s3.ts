/**
 * Push and pull throughput through S3 write-back, on loopback against s3rver (`npm run build`
 * first: it measures the binaries in dist/):
 *
 *   node --import tsx test/bench/s3.ts [--size 128MiB] [--runs 3] [--part 8MiB]
 *
 * Processes, as in a deployment: the S3-compatible server (`shoal devcluster s3-server`,
 * s3rver), a herd whose origin writes back to it, one agent. Per run, a fresh random file:
 * - push acknowledged: PushCLI push until it exits (uploaded to the origin, sha256 verified,
 *   write-back mark durable);
 * - push into S3: from the same start until the whole blob is in the bucket (write-back done);
 * - pull, origin cold: the herd restarted with an empty origin cache, so the origin fetches the
 *   blob from S3 (202 while fetching), generates its metainfo and seeds it; PullCLI pull on the
 *   agent until the file is in place and verified;
 * - pull, origin warm: the agent's copy deleted, pulled again from the origin's cache;
 * - and, for scale, the same push into a second herd on its folder backend (no S3), and the
 *   S3 backend alone: one put and one get of the same bytes.
 * MB/s are 10^6 bytes per second; each figure is the median of the runs.
 */
import { execFile } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs, promisify } from 'node:util'
import { stringify } from 'yaml'
import { S3Backend, S3BackendConfig } from '../../lib/backend/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest } from '../../lib/core/index.js'
import { blobKey } from '../../lib/origin/server/keys.js'
import { fmt, formatBytes, formatTable, parseSize, percentile } from './helpers.js'
import { distCmd, freePort, freePortRange, type Proc, ProcGroup, ROOT, waitReady } from './procs.js'

const run = promisify(execFile)
const BUCKET = 'shoal-bench'
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }

const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: '128MiB' },
    runs: { type: 'string', default: '3' },
    part: { type: 'string', default: '8MiB' },
  },
})
const SIZE = parseSize(args.size)
const RUNS = Number(args.runs)
const PART = parseSize(args.part)

const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000)

async function writeRandom(path: string, size: number): Promise<void> {
  const out = createWriteStream(path)
  for (let done = 0; done < size; ) {
    const n = Math.min(1 << 20, size - done)
    done += n
    if (!out.write(randomFillSync(Buffer.allocUnsafe(n))))
      await new Promise<void>((r) => out.once('drain', () => r()))
  }
  await new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res())))
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-bench-s3-'))
  const procs = new ProcGroup()
  process.once('SIGINT', () => {
    procs.killAllNow()
    process.exit(130)
  })
  try {
    const s3Port = await freePort()
    const endpoint = `http://127.0.0.1:${s3Port}`
    const s3 = procs.spawn(
      's3',
      process.execPath,
      [
        distCmd('shoal'),
        'devcluster',
        's3-server',
        '--port',
        String(s3Port),
        '--directory',
        join(dir, 's3'),
        '--bucket',
        BUCKET,
      ],
      { log: join(dir, 's3.log') },
    )
    await waitReady(s3, endpoint)
    const backendConfig = {
      type: 's3',
      bucket: BUCKET,
      endpoint,
      credentials: CREDENTIALS,
      partSizeBytes: PART,
    }
    const direct = new S3Backend(validateConfig(S3BackendConfig, backendConfig))

    const base = await freePortRange(5)
    const herdConfig = join(dir, 'herd.yaml')
    await writeFile(
      herdConfig,
      stringify({
        extends: join(ROOT, 'config', 'herd', 'development.yaml'),
        log: { level: 'warn' },
        origin: { log: { level: 'warn' }, backend: backendConfig },
      }),
    )
    const herdDir = join(dir, 'herd')
    let herd: Proc | undefined
    const startHerd = async () => {
      herd = procs.spawn(
        'herd',
        process.execPath,
        [
          distCmd('shoal'),
          'herd',
          '--config',
          herdConfig,
          '--data-dir',
          herdDir,
          '--base-port',
          String(base),
        ],
        { log: join(dir, 'herd.log') },
      )
      await waitReady(herd, `http://127.0.0.1:${base}`)
      await waitReady(herd, `http://127.0.0.1:${base + 2}`)
    }
    await startHerd()
    // For scale: the same push into a herd on its local folder backend (no S3), run alone.
    const folderBase = await freePortRange(5)
    const folderHerd = procs.spawn(
      'herd-folder',
      process.execPath,
      [
        distCmd('shoal'),
        'herd',
        '--data-dir',
        join(dir, 'herd-folder'),
        '--base-port',
        String(folderBase),
        '--log-level',
        'warn',
      ],
      { log: join(dir, 'herd-folder.log') },
    )
    await waitReady(folderHerd, `http://127.0.0.1:${folderBase}`)
    const [api, peer] = [await freePort(), await freePort()]
    const agent = procs.spawn(
      'agent',
      process.execPath,
      [
        distCmd('shoal'),
        'agent',
        '--port',
        String(api),
        '--peer-port',
        String(peer),
        '--data-dir',
        join(dir, 'agent'),
        '--tracker',
        `127.0.0.1:${base + 3}`,
        '--build-index',
        `127.0.0.1:${base + 4}`,
        '--log-level',
        'warn',
      ],
      { log: join(dir, 'agent.log') },
    )
    await waitReady(agent, `http://127.0.0.1:${api}`)

    const rows: Record<string, number[]> = {
      'push acknowledged, folder backend (no S3)': [],
      'push acknowledged': [],
      'push into S3 (write-back done)': [],
      'pull, origin cold (fetched from S3)': [],
      'pull, origin warm (its cache)': [],
      'S3 backend alone: put': [],
      'S3 backend alone: get': [],
    }
    const add = (row: string, ms: number) => rows[row]?.push(mbps(SIZE, ms))
    for (let i = 1; i <= RUNS; i++) {
      process.stderr.write(`run ${i}/${RUNS}: ${formatBytes(SIZE)}\n`)
      const file = join(dir, `run-${i}.bin`)
      await writeRandom(file, SIZE)

      const pushTo = (port: number) =>
        run(process.execPath, [
          distCmd('PushCLI'),
          'push',
          '--src-path',
          file,
          '--dst-host',
          `127.0.0.1:${port}`,
          '--version',
          `v${i}`,
        ])
      let t0 = performance.now()
      await pushTo(folderBase)
      add('push acknowledged, folder backend (no S3)', performance.now() - t0)
      await sleep(1000) // its write-back to the folder finishes apart from the measured push
      t0 = performance.now()
      const pushed = await pushTo(base)
      const acked = performance.now()
      const tag = /^tag:\s+(.+)$/m.exec(pushed.stdout)?.[1] ?? ''
      const digest = Digest.parse(/^digest:\s+(\S+)$/m.exec(pushed.stdout)?.[1] ?? '')
      const key = blobKey('default', digest)
      while ((await direct.stat(key))?.size !== SIZE) await sleep(20)
      const inS3 = performance.now()
      add('push acknowledged', acked - t0)
      add('push into S3 (write-back done)', inS3 - t0)

      // Cold: the origin's cache is emptied (S3 has every blob; tags live in the herd's folder).
      if (herd) await procs.stop([herd])
      await rm(join(herdDir, 'origin'), { recursive: true, force: true })
      await startHerd()
      const pull = async (n: string) => {
        const out = join(dir, `out-${i}-${n}`)
        const start = performance.now()
        await run(process.execPath, [
          distCmd('PullCLI'),
          'pull',
          '--tag',
          tag,
          '--dst-path',
          out,
          '--dst-host',
          `127.0.0.1:${api}`,
          '--timeout',
          '600',
        ])
        const ms = performance.now() - start
        await rm(out, { recursive: true, force: true })
        await fetch(`http://127.0.0.1:${api}/blobs/${digest}`, { method: 'DELETE' })
        return ms
      }
      add('pull, origin cold (fetched from S3)', await pull('cold'))
      add('pull, origin warm (its cache)', await pull('warm'))

      const rawKey = `bench/raw-${i}`
      let start = performance.now()
      await direct.put(rawKey, createReadStream(file), { size: SIZE })
      add('S3 backend alone: put', performance.now() - start)
      start = performance.now()
      await pipeline(await direct.get(rawKey), new Writable({ write: (_c, _e, cb) => cb() }))
      add('S3 backend alone: get', performance.now() - start)
      await direct.delete(rawKey)
      await rm(file)
    }
    await direct.close()
    const table = formatTable(
      ['', 'MB/s (median)', 'min', 'max'],
      Object.entries(rows).map(([name, v]) => [
        name,
        fmt(percentile(v, 50), 1),
        fmt(Math.min(...v), 1),
        fmt(Math.max(...v), 1),
      ]),
    )
    process.stdout.write(
      `${formatBytes(SIZE)} blobs, ${RUNS} runs, S3 part size ${formatBytes(PART)}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), node ${process.version}\n\n${table}\n`,
    )
  } finally {
    await procs.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
