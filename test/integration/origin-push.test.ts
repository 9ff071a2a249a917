/**
 * One push asks the origin cluster as little as it can (issue 8 §3): the owner is looked up
 * once and the blob's existence is checked once, by the upload start. Counted at a real origin:
 * every request reaches it through a counting forwarder (its advertised address, so the owner
 * the proxy is sent to is the forwarder too), and its backend counts the stats it answers.
 */
import { writeFile } from 'node:fs/promises'
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { MemoryBackend } from '../../lib/backend/index.js'
import { push } from '../../lib/cli/push.js'
import { validateConfig } from '../../lib/config/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { OriginServer } from '../../lib/origin/server/index.js'
import { tempDir } from '../helpers/files.js'
import { startPushFront } from '../helpers/herd.js'
import { writtenBack } from '../helpers/writeback.js'

const logger = silentLogger()
const listen = { host: '127.0.0.1', port: 0 }

/** A backend that counts existence checks (stat: a HEAD on S3). */
class CountingBackend extends MemoryBackend {
  stats = 0
  override stat(...args: Parameters<MemoryBackend['stat']>) {
    this.stats++
    return super.stat(...args)
  }
}

/** Forwards every request to 127.0.0.1:`targetPort()` and records it as "METHOD kind". */
async function countingForwarder(t: Test, targetPort: () => number) {
  const seen: string[] = []
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${kind(req.url ?? '')}`)
    const up = request(
      { host: '127.0.0.1', port: targetPort(), method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers)
        r.pipe(res)
      },
    )
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const count = (what: string) => seen.filter((s) => s === what).length
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, seen, count }
}

function kind(url: string): string {
  if (url.startsWith('/blobs/') && url.includes('/locations')) return 'locations'
  if (/\/uploads\/[^/]+$/.test(url)) return 'upload'
  if (url.endsWith('/uploads')) return 'uploads'
  return 'blob'
}

async function setup(t: Test) {
  const dir = await tempDir(t)
  const backend = new CountingBackend()
  let origin: OriginServer | undefined
  const front = await countingForwarder(t, () => Number(new URL(origin?.url ?? '').port))
  origin = new OriginServer(
    validateConfig(OriginConfigSchema, {
      log: { level: 'silent' },
      server: listen,
      dataDir: join(dir, 'origin'),
      trackerUrl: 'http://tracker.test:15003',
      // Advertised as the forwarder: the locations it answers send everyone through it.
      self: front.address,
    }),
    { logger, backend, tagLookup: { tagsOf: async () => [] } },
  )
  await origin.start()
  t.teardown(() => origin?.stop())
  const { proxy } = await startPushFront(t, [front.address])
  const file = join(dir, 'blob.bin')
  await writeFile(file, Buffer.alloc(3 << 20, 9))
  const pushFile = () => push({ srcPath: file, srcHost: 'build-1', dstHost: proxy.url })
  return { front, backend, pushFile, origin }
}

t.test('one push looks the owner up once and checks existence once', async (t) => {
  const { front, backend, pushFile, origin } = await setup(t)
  const first = await pushFile()
  t.ok(first.uploaded, 'the first push uploads')
  // The blob: the proxy's one owner lookup, one upload start (the existence check), three
  // chunks and the commit. The tag: build-index's own lookup and HEAD, its guard against a tag
  // for a blob nobody holds.
  t.same(front.seen, [
    'GET locations',
    'POST uploads',
    'PATCH upload',
    'PATCH upload',
    'PATCH upload',
    'PUT upload',
    'GET locations',
    'HEAD blob',
  ])
  // Write-back runs after the push is acknowledged, and checks the size the backend stored.
  await writtenBack(origin.registry)
  t.equal(
    backend.stats,
    2,
    'the backend is asked once whether it holds the blob (and once by the write-back)',
  )

  front.seen.length = 0
  backend.stats = 0
  const again = await pushFile()
  t.notOk(again.uploaded, 'a second push finds the blob stored')
  // The upload start answers ALREADY_EXISTS; the tag is unchanged, so build-index asks nothing.
  t.same(front.seen, ['GET locations', 'POST uploads'], 'no bytes sent')
  t.equal(backend.stats, 1, 'the backend is asked once (to make sure it holds the cached blob)')
})
