/**
 * Blob lifecycle, remove → GC (issue 9, fault test 6), on real sockets: three real origins (each
 * with its BitTorrent engine) in a ring with 3 replicas, a tracker, a build-index with a 300 ms
 * grace period and a proxy; the backend a shared folder, or S3 (s3rver). A removed tag's blob is
 * gone from every origin (blob, metainfo sidecar) and from the backend once the grace period
 * has passed; a re-push during the grace period keeps it (by its new tag, or by the push alone);
 * a blob another tag refers to is kept; a build-index restarted during the grace period still
 * deletes it. Every wait polls against a deadline.
 */
import { randomBytes } from 'node:crypto'
import { readFile as readFileBytes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { FsBackend } from '../../lib/backend/fs.js'
import type { Backend } from '../../lib/backend/index.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { BuildIndexServer } from '../../lib/build-index/server/index.js'
import { push } from '../../lib/cli/push.js'
import { remove } from '../../lib/cli/remove.js'
import { validateConfig } from '../../lib/config/index.js'
import { type Digest, MetaInfo } from '../../lib/core/index.js'
import { ReservedListener } from '../../lib/lifecycle/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { OriginClient } from '../../lib/origin/client/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { OriginNode } from '../../lib/origin/node.js'
import { blobKey } from '../../lib/origin/server/index.js'
import { ProxyConfigSchema } from '../../lib/proxy/config.js'
import { startProxy } from '../../lib/proxy/server/index.js'
import { TrackerConfigSchema } from '../../lib/tracker/config.js'
import { startTracker } from '../../lib/tracker/server/index.js'
import { tempDir } from '../helpers/files.js'
import { S3RVER_CREDENTIALS, startS3rver } from '../helpers/s3rver.js'
import { metricValue, until, writtenBack } from '../helpers/writeback.js'

const logger = silentLogger()
const HOST = '127.0.0.1'
const HEALTH = { intervalMs: 300, timeoutMs: 1000, failThreshold: 3, passThreshold: 2 }
const GRACE_MS = 300

async function startCluster(t: Test, opts: { s3?: boolean; graceMs?: number } = {}) {
  // Stopped in reverse order of start, in one teardown (before the folder goes): S3 last, once
  // no origin talks to it.
  const stops: (() => Promise<unknown>)[] = []
  t.teardown(async () => {
    for (const stop of stops.reverse()) {
      await stop()
    }
  })
  const dir = await tempDir(t)
  const listen = { host: HOST, port: 0 }
  let backendConfig: Record<string, unknown> = { type: 'fs', root: join(dir, 'backend') }
  let backend: Backend = new FsBackend(join(dir, 'backend'))
  if (opts.s3) {
    const s3 = await startS3rver()
    stops.push(() => s3.close())
    backendConfig = {
      type: 's3',
      bucket: s3.bucket,
      endpoint: s3.endpoint,
      credentials: S3RVER_CREDENTIALS,
      retryBaseMs: 5,
    }
    backend = s3.backend()
  }
  const http: ReservedListener[] = []
  for (let i = 0; i < 3; i++) {
    const l = new ReservedListener(`origin ${i}`, HOST, 0)
    await l.start()
    http.push(l)
  }
  const nodes = http.map((l) => `${HOST}:${l.port}`)
  const tracker = await startTracker(
    validateConfig(TrackerConfigSchema, {
      server: listen,
      announceInterval: 2,
      minInterval: 1,
      peerTtlSeconds: 10,
      origins: nodes.map((h) => ({ http: h, peer: '127.0.0.1:1' })),
    }),
    { logger },
  )
  stops.push(() => tracker.stop())

  const buildIndexConfig = (port: number) =>
    validateConfig(BuildIndexConfigSchema, {
      server: { host: HOST, port },
      origins: nodes,
      originHealth: HEALTH,
      backend: { type: 'fs', root: join(dir, 'tags') },
      gc: { graceMs: opts.graceMs ?? GRACE_MS, sweepIntervalMs: 50 },
    })
  const cluster = { buildIndex: new BuildIndexServer(buildIndexConfig(0), { logger }) }
  await cluster.buildIndex.start()
  stops.push(() => cluster.buildIndex.stop())
  const buildIndexPort = Number(new URL(cluster.buildIndex.url).port)

  const origins: OriginNode[] = []
  for (let i = 0; i < 3; i++) {
    const node = new OriginNode(
      validateConfig(OriginConfigSchema, {
        server: { host: HOST, port: http[i]?.port },
        peer: { host: HOST, port: 0 },
        dataDir: join(dir, `origin-${i}`),
        backend: backendConfig,
        trackerUrl: tracker.url,
        buildIndex: `${HOST}:${buildIndexPort}`,
        self: nodes[i],
        hashring: { nodes, replicas: 3, healthCheck: HEALTH },
      }),
      { logger, listeners: { http: http[i]?.server } },
    )
    await node.start()
    origins.push(node)
  }
  stops.push(async () => {
    for (const o of origins) await o.stop()
    // The origin does not close its backends' clients; their keep-alive sockets would hold s3rver open.
    for (const o of origins)
      for (const b of o.origin.backends.all()) await (b as { close?: () => Promise<void> }).close?.()
  })
  const proxy = await startProxy(
    validateConfig(ProxyConfigSchema, {
      server: listen,
      origins: nodes,
      originHealth: HEALTH,
      buildIndex: cluster.buildIndex.url,
      uploadChunkSize: 1 << 20,
    }),
    { logger },
  )
  stops.push(() => proxy.stop())

  /** Stops build-index and starts a new one on the same port and tag folder. */
  const restartBuildIndex = async () => {
    await cluster.buildIndex.stop()
    cluster.buildIndex = new BuildIndexServer(buildIndexConfig(buildIndexPort), { logger })
    await cluster.buildIndex.start()
  }

  let n = 0
  /** Writes a fresh 2 MiB file and pushes it as `tag` (h-/dir-file:v1 style). */
  const pushNew = async (version = 'v1') => {
    const path = join(dir, `file-${n++}.bin`)
    await writeFile(path, randomBytes(2 << 20))
    return pushFile(path, version)
  }
  const pushFile = (path: string, version: string) =>
    push({ srcPath: path, srcHost: 'h1', dstHost: proxy.url, version })

  /** Every origin holds the blob (the ones that lack it fetch it from the backend when asked). */
  const onEveryOrigin = async (digest: Digest) => {
    for (const o of origins) await writtenBack(o.origin.registry)
    await until('every origin to hold the blob', async () => {
      let all = true
      for (const o of origins) {
        // Asking for the metainfo fetches a missing blob from the backend and writes its sidecar.
        await new OriginClient(o.origin.url).metainfo('default', digest).catch(() => undefined)
        if (!(await o.origin.store.readMetaInfo(digest))) all = false
      }
      return all
    })
  }
  const held = async (digest: Digest) => {
    const where: string[] = []
    for (const [i, o] of origins.entries()) {
      if (await o.origin.store.stat(digest)) where.push(`origin ${i}`)
      if (await o.origin.store.readMetaInfo(digest)) where.push(`origin ${i} metainfo`)
    }
    if (await backend.stat(blobKey('default', digest))) where.push('backend')
    return where
  }
  const settled = () =>
    until('GC to decide every candidate', () => (cluster.buildIndex.gc?.candidates.length ?? 0) === 0, 20_000)
  return {
    dir,
    cluster,
    origins,
    backend,
    proxy,
    pushNew,
    pushFile,
    onEveryOrigin,
    held,
    settled,
    restartBuildIndex,
  }
}

const kept = (c: { cluster: { buildIndex: BuildIndexServer } }, reason: string) =>
  metricValue(c.cluster.buildIndex.registry, 'shoal_build_index_gc_kept_total', { reason })

t.test(
  'a removed tag: after the grace period the blob is gone from every origin and the backend',
  async (t) => {
    const c = await startCluster(t)
    const pushed = await c.pushNew()
    await c.onEveryOrigin(pushed.digest)
    t.equal((await c.held(pushed.digest)).length, 7, 'three origins, three sidecars, the backend')
    const meta = MetaInfo.parse((await c.origins[0]!.origin.store.readMetaInfo(pushed.digest))!)
    for (const o of c.origins) t.ok(o.engine.stats(meta.infoHash), 'seeded')
    const removedAt = Date.now()
    await remove({ tag: pushed.tag.toString(), dstHost: c.proxy.url })
    t.equal(c.cluster.buildIndex.gc?.candidates.length, 1, 'a candidate while the grace period runs')
    await until('the blob to be gone everywhere', async () => (await c.held(pushed.digest)).length === 0)
    t.ok(Date.now() - removedAt >= GRACE_MS, 'not before the grace period')
    await c.settled()
    t.equal(await metricValue(c.cluster.buildIndex.registry, 'shoal_build_index_gc_deleted_total'), 1)
    t.equal(await metricValue(c.cluster.buildIndex.registry, 'shoal_build_index_gc_candidates'), 0)
    for (const o of c.origins) t.notOk(o.engine.stats(meta.infoHash), 'no longer seeded')
  },
)

t.test('a re-push of the same bytes during the grace period keeps the blob', async (t) => {
  const c = await startCluster(t)
  // By its tag: the push dedupes and puts the tag again.
  const a = await c.pushNew()
  await c.onEveryOrigin(a.digest)
  await remove({ tag: a.tag.toString(), dstHost: c.proxy.url })
  const again = await c.pushFile(join(c.dir, 'file-0.bin'), 'v2')
  t.same(again.digest, a.digest)
  // By the push alone (no tag yet): an upload answered "already stored" on an owner.
  const b = await c.pushNew()
  await c.onEveryOrigin(b.digest)
  await remove({ tag: b.tag.toString(), dstHost: c.proxy.url })
  const primary = new OriginClient((await new OriginClient(c.origins[0]!.origin.url).locations(b.digest))[0]!)
  const bytes = await readFileBytes(join(c.dir, 'file-1.bin'))
  await primary.upload('default', b.digest, Readable.from([bytes]), bytes.length)

  await c.settled()
  t.equal(await kept(c, 'retagged'), 1, 'kept: re-tagged')
  t.equal(await kept(c, 'repushed'), 1, 'kept: re-pushed')
  t.equal(await metricValue(c.cluster.buildIndex.registry, 'shoal_build_index_gc_deleted_total'), 0)
  t.ok((await c.held(a.digest)).includes('backend'), 're-tagged: still in the backend')
  t.ok((await c.held(a.digest)).length === 7, 're-tagged: on every origin')
  // The re-pushing origin may have been asked after another deleted its copy: it writes the
  // blob back again, so the backend ends up holding it.
  await until('the re-pushed blob to be in the backend', async () =>
    (await c.held(b.digest)).includes('backend'),
  )
  t.ok(await c.backend.stat(blobKey('default', b.digest)))
})

t.test('a blob another tag still refers to is kept', async (t) => {
  const c = await startCluster(t)
  const a = await c.pushNew('v1')
  const also = await c.pushFile(join(c.dir, 'file-0.bin'), 'v2')
  t.same(also.digest, a.digest)
  await c.onEveryOrigin(a.digest)
  await remove({ tag: a.tag.toString(), dstHost: c.proxy.url })
  await c.settled()
  t.equal(await kept(c, 'retagged'), 1)
  t.equal((await c.held(a.digest)).length, 7, 'still on every origin and in the backend')
})

t.test('a build-index restarted during the grace period still deletes after it', async (t) => {
  const c = await startCluster(t, { graceMs: 1500 })
  const a = await c.pushNew()
  await c.onEveryOrigin(a.digest)
  await remove({ tag: a.tag.toString(), dstHost: c.proxy.url })
  await c.restartBuildIndex()
  t.equal(c.cluster.buildIndex.gc?.candidates.length, 1, 'the candidate was persisted')
  t.ok((await c.held(a.digest)).includes('backend'), 'not deleted before the grace period')
  await until('the blob to be gone everywhere', async () => (await c.held(a.digest)).length === 0)
  await c.settled()
})

t.test("with S3: the removed blob's object is gone from the bucket after the grace period", async (t) => {
  const c = await startCluster(t, { s3: true })
  const a = await c.pushNew()
  await c.onEveryOrigin(a.digest)
  t.ok(await c.backend.stat(blobKey('default', a.digest)), 'in S3')
  await remove({ tag: a.tag.toString(), dstHost: c.proxy.url })
  await until('the S3 object and every copy to be gone', async () => (await c.held(a.digest)).length === 0)
  await c.settled()
  t.notOk(await c.backend.stat(blobKey('default', a.digest)))
})
