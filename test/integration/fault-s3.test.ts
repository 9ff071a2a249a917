/**
 * Fault 2 of issue 9: the S3 server fails a fifth of the requests. An origin (a separate
 * process, the built `shoal origin`) writes back to s3rver through a fault-injecting proxy
 * (test/helpers/fault-proxy.ts: seeded, so the same request numbers fail on every run: 500s,
 * 503s, reset connections, and answers lost after S3 acted). Blobs of several sizes are pushed,
 * two of them above the multipart part size so multipart calls meet faults too; every one ends up
 * in the bucket byte-identical, read back from s3rver directly, not through the proxy.
 *
 * And the bad-input line: a missing bucket, wrong credentials or an unreachable endpoint stop
 * the origin process at start-up, exit code 1, with one line on stderr naming the problem.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { push } from '../../lib/cli/push.js'
import { digestFile } from '../../lib/core/index.js'
import { builtBinary } from '../../lib/devcluster/layout.js'
import { freePort } from '../../lib/herd/index.js'
import { blobKey } from '../../lib/origin/server/keys.js'
import { startFaultProxy } from '../helpers/fault-proxy.js'
import { randomFile, tempDir } from '../helpers/files.js'
import { startPushFront } from '../helpers/herd.js'
import { originAddresses, startOriginProc, until } from '../helpers/origin-procs.js'
import { S3RVER_CREDENTIALS, type S3Server, startS3rver } from '../helpers/s3rver.js'

const MiB = 1 << 20
const PART = 5 * MiB

let s3: S3Server
t.before(async () => {
  s3 = await startS3rver('shoal-fault')
})
t.teardown(() => s3.close())

t.test('S3 failing 20 % of requests: every pushed blob ends up in S3 byte-identical', async (t) => {
  const dir = await tempDir(t, 'shoal-fault2-')
  const proxy = await startFaultProxy(s3.endpoint, { failRate: 0.2, seed: 20261205 })
  t.teardown(() => proxy.close())
  const [addr] = await originAddresses(1)
  if (!addr) throw new Error('no ports')
  const origin = await startOriginProc(t, dir, 'origin', addr, {
    dataDir: join(dir, 'origin'),
    backend: {
      type: 's3',
      bucket: s3.bucket,
      endpoint: proxy.url,
      credentials: S3RVER_CREDENTIALS,
      partSizeBytes: PART,
      uploadConcurrency: 2,
      retryBaseMs: 5,
    },
    // No tracker runs here: seeding is not what this test is about (announces fail quietly).
    trackerUrl: 'http://127.0.0.1:9',
    writeBack: { concurrency: 2, maxBackoffSeconds: 1 },
  })
  const { proxy: pushProxy } = await startPushFront(t, [origin.http])

  // Below one part, exactly one part, one byte over (two parts), several parts.
  const sizes = [1000, MiB, PART, PART + 1, 12 * MiB + 12345, 24 * MiB]
  const pushed: (Awaited<ReturnType<typeof push>> & { src: string })[] = []
  for (const [i, size] of sizes.entries()) {
    const src = join(dir, `blob-${i}.bin`)
    await randomFile(src, size)
    const p = await push({ srcPath: src, srcHost: 'h1', dstHost: pushProxy.url, version: 'v1' })
    t.ok(p.uploaded, `pushed ${size} bytes`)
    pushed.push({ ...p, src })
  }

  const direct = s3.backend()
  await until(
    'every blob is in S3 at its size',
    async () => {
      for (const p of pushed)
        if ((await direct.stat(blobKey('default', p.digest)))?.size !== p.size) return false
      return true
    },
    120_000,
  )
  for (const p of pushed) {
    const hash = createHash('sha256')
    for await (const chunk of await direct.get(blobKey('default', p.digest))) hash.update(chunk as Buffer)
    t.equal(hash.digest('hex'), p.digest.hex, `${p.size} bytes read back from s3rver match the pushed sha256`)
    t.ok((await digestFile(p.src)).digest.equals(p.digest))
  }
  await until('no write-back is pending', async () => {
    const text = await (await fetch(`http://${origin.http}/metrics`)).text()
    return /^shoal_origin_writeback_pending(?:\{[^}]*\})? 0$/m.test(text)
  })

  const { requests, faults } = proxy.stats
  const injected = Object.values(faults).reduce((a, b) => a + b, 0)
  t.ok(injected >= requests * 0.1, `${injected} of ${requests} requests failed: ${JSON.stringify(faults)}`)
  for (const [kind, n] of Object.entries(faults)) t.ok(n > 0, `${n} × ${kind}`)
  const multipart = proxy.failed.filter((f) => /[?&](uploadId|uploads)/.test(f.request))
  t.ok(multipart.length > 0, `${multipart.length} multipart requests failed, e.g. ${multipart[0]?.request}`)
})

t.test('bad S3 settings stop the origin process at start-up with one line', async (t) => {
  const dir = await tempDir(t, 'shoal-s3-bad-')
  const closed = await freePort()
  const cases = [
    {
      name: 'missing bucket',
      backend: { bucket: 'no-such-bucket' },
      line: /no-such-bucket.*the bucket does not exist/,
    },
    {
      name: 'wrong credentials',
      backend: { credentials: { accessKeyId: 'NOBODY', secretAccessKey: 'NOT-THE-SECRET' } },
      line: /shoal-fault.*access denied: check the credentials/,
    },
    {
      name: 'unreachable endpoint',
      backend: { endpoint: `http://127.0.0.1:${closed}`, maxAttempts: 2, connectTimeoutMs: 1000 },
      line: new RegExp(`127\\.0\\.0\\.1:${closed}`),
    },
  ]
  for (const [i, c] of cases.entries()) {
    const [addr] = await originAddresses(1)
    const file = join(dir, `origin-${i}.yaml`)
    await writeFile(
      file,
      stringify({
        log: { level: 'warn' },
        server: { host: '127.0.0.1', port: Number(addr?.http.split(':')[1]) },
        peer: { host: '127.0.0.1', port: Number(addr?.peer.split(':')[1]) },
        dataDir: join(dir, `origin-${i}`),
        backend: {
          type: 's3',
          bucket: s3.bucket,
          endpoint: s3.endpoint,
          credentials: S3RVER_CREDENTIALS,
          retryBaseMs: 5,
          ...c.backend,
        },
      }),
    )
    const { code, stderr } = await runToExit([builtBinary('shoal'), 'origin', '--config', file])
    t.equal(code, 1, `${c.name}: exit code 1`)
    const lines = stderr.trim().split('\n')
    t.equal(lines.length, 1, `${c.name}: one line on stderr`)
    t.match(lines[0], /^shoal origin: /, `${c.name}: names the daemon`)
    t.match(lines[0], c.line, `${c.name}: ${lines[0]}`)
    t.notMatch(stderr, /NOT-THE-SECRET|S3RVER/, `${c.name}: no credential printed`)
  }
})

/** Runs node with `args` until it exits (at most 60 s), collecting stderr. */
function runToExit(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${args.join(' ')} did not exit within 60 s`))
    }, 60_000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stderr })
    })
  })
}
