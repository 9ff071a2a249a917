/**
 * Nobody destroys tagged data (hardening item 6), through real HTTP against a real origin and
 * a real build-index: a blob with tags is not deleted, an unreachable build-index refuses the
 * delete, a deleted immutable version keeps a tombstone, RemoveCLI's order (tag, then blob)
 * works, and PUT /bandwidth has a floor.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { FsBackend } from '../../lib/backend/fs.js'
import { MemoryBackend } from '../../lib/backend/memory.js'
import { HostBandwidth } from '../../lib/bandwidth/index.js'
import { BuildIndexClient } from '../../lib/build-index/client/index.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { OriginBlobCheck, startBuildIndex } from '../../lib/build-index/server/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest, Tag } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { OriginClient, OriginCluster } from '../../lib/origin/client/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { blobKey, OriginServer } from '../../lib/origin/server/index.js'
import { writtenBack } from '../helpers/writeback.js'

const logger = silentLogger()
const listen = { host: '127.0.0.1', port: 0 }

async function setup(t: Test, opts: { purgeFrom?: string } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-delete-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // Build-index first (the origin needs its address); it learns the origin's once that starts.
  let origins: OriginBlobCheck | undefined
  const buildIndex = await startBuildIndex(
    validateConfig(BuildIndexConfigSchema, { server: listen, purgeFrom: opts.purgeFrom ?? 'loopback' }),
    {
      logger,
      backend: new MemoryBackend(),
      blobCheck: { exists: (ns, digest, signal) => (origins as OriginBlobCheck).exists(ns, digest, signal) },
    },
  )
  t.teardown(() => buildIndex.stop())
  const backend = new FsBackend(join(dir, 'backend'))
  const bandwidth = new HostBandwidth({ egressBytesPerSec: 0, ingressBytesPerSec: 0, burstBytes: 0 })
  t.teardown(() => bandwidth.close())
  const origin = new OriginServer(
    validateConfig(OriginConfigSchema, {
      log: { level: 'silent' },
      server: listen,
      dataDir: join(dir, 'data'),
      trackerUrl: 'http://tracker.test:15003',
      buildIndex: buildIndex.url,
    }),
    { logger, backend, bandwidth },
  )
  await origin.start()
  t.teardown(() => origin.stop())
  origins = new OriginBlobCheck(new OriginCluster([origin.url]))
  return {
    origin,
    buildIndex,
    backend,
    client: new OriginClient(origin.url),
    tags: new BuildIndexClient(buildIndex.url),
  }
}

async function upload(client: OriginClient, text: string): Promise<Digest> {
  const data = Buffer.from(text)
  const digest = Digest.fromBuffer(data)
  await client.upload('default', digest, Readable.from([data]), data.length)
  return digest
}

async function errorOf(p: Promise<unknown>) {
  try {
    await p
  } catch (err) {
    if (isShoalError(err)) return err
    throw err
  }
  throw new Error('expected a failure')
}

t.test('a blob that tags point at is not deleted; once untagged it is (RemoveCLI order)', async (t) => {
  const { client, tags, backend, origin } = await setup(t)
  const digest = await upload(client, 'reference data v1')
  await writtenBack(origin.registry)
  const v1 = Tag.parse('10.0.0.1-/data-ref.csv:v1')
  const latest = Tag.parse('10.0.0.1-/data-ref.csv')
  await tags.putTag(v1, digest)
  await tags.putTag(latest, digest)

  const err = await errorOf(client.deleteBlob('default', digest))
  t.equal(err.code, 'BLOB_IN_USE')
  t.equal(err.status, 409)
  t.match(err.message, /10\.0\.0\.1-\/data-ref\.csv/, 'the answer names a tag')
  t.same(await client.stat('default', digest), { size: 17, pending: false }, 'still served')
  t.ok(await backend.stat(blobKey('default', digest)), 'still in the backend')

  // RemoveCLI: the tags go first, then the blob nothing refers to any more.
  await tags.deleteTag(v1)
  t.equal((await errorOf(client.deleteBlob('default', digest))).code, 'BLOB_IN_USE', 'latest still points')
  await tags.deleteTag(latest)
  await client.deleteBlob('default', digest)
  t.equal(await client.stat('default', digest), undefined, 'deleted once no tag points at it')
  t.equal(await backend.stat(blobKey('default', digest)), undefined, 'and gone from the backend')
})

t.test('build-index unreachable: the delete is refused, never assumed safe', async (t) => {
  const { client, buildIndex } = await setup(t)
  const digest = await upload(client, 'precious')
  await buildIndex.stop()
  const err = await errorOf(client.deleteBlob('default', digest))
  t.equal(err.code, 'UNAVAILABLE')
  t.equal(err.status, 503)
  t.match(err.message, /not deleted/)
  t.ok(await client.stat('default', digest), 'the blob is kept')
})

t.test(
  'a deleted immutable version keeps a tombstone: restore yes, repoint no, purge by operator',
  async (t) => {
    const { client, tags } = await setup(t)
    const a = await upload(client, 'bytes A')
    const b = await upload(client, 'bytes B')
    const v1 = Tag.parse('h-/x-f.bin:v1')
    await tags.putTag(v1, a)
    await tags.deleteTag(v1)

    const err = await errorOf(tags.putTag(v1, b))
    t.equal(err.code, 'TAG_CONFLICT')
    t.equal(err.status, 409)
    t.match(err.message, /tombstone/, 'names the tombstone')
    t.match(err.message, /purge=true/, 'and how to purge it')
    t.equal((await tags.putTag(v1, a)).result, 'created', 'the same digest restores the version')

    // Through DELETE then PUT an immutable version cannot be repointed; an operator may purge.
    await tags.deleteTag(v1, { purge: true })
    t.equal((await tags.putTag(v1, b)).result, 'created', 'after a purge the version is free')
    t.ok((await tags.getTag(v1)).equals(b))
  },
)

t.test('purge is refused when the build-index does not allow it', async (t) => {
  const { client, tags } = await setup(t, { purgeFrom: 'nowhere' })
  const a = await upload(client, 'bytes A')
  const v1 = Tag.parse('h-/x-f.bin:v1')
  await tags.putTag(v1, a)
  const err = await errorOf(tags.deleteTag(v1, { purge: true }))
  t.equal(err.code, 'FORBIDDEN')
  t.equal(err.status, 403)
  t.ok(await tags.hasTag(v1), 'nothing was deleted')
})

t.test('PUT /bandwidth refuses caps below the floor; 0 stays unlimited', async (t) => {
  const { origin } = await setup(t)
  const put = (body: unknown) =>
    fetch(`${origin.url}/bandwidth`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
  const low = await put({ egressBytesPerSec: 1 })
  t.equal(low.status, 400)
  const body = (await low.json()) as { code: string; message: string }
  t.equal(body.code, 'BAD_REQUEST')
  t.match(body.message, /below the floor of 65536/, 'names the floor')
  const lowIngress = await put({ ingressBytesPerSec: '1KiB' })
  t.equal(lowIngress.status, 400, 'ingress too, in units')
  await lowIngress.body?.cancel()
  const ok = await put({ egressBytesPerSec: '1MiB', ingressBytesPerSec: 0 })
  t.equal(ok.status, 200)
  t.match(await ok.json(), { egressBytesPerSec: 1 << 20, ingressBytesPerSec: 0 })
  const unlimited = await put({ egressBytesPerSec: 0 })
  t.equal(unlimited.status, 200, '0 (unlimited) is accepted')
  await unlimited.body?.cancel()
})
