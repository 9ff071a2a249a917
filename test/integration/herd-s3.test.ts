/**
 * `shoal herd` on S3 from config: the herd's origin section takes the origin's own `backend` /
 * `namespaces` keys (not merged with the herd's folder backend), so a push through the herd's
 * proxy ends up in the bucket; without them the herd keeps its local folder.
 */
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import t from 'tap'
import { FsBackend } from '../../lib/backend/index.js'
import { push } from '../../lib/cli/push.js'
import { validateConfig } from '../../lib/config/index.js'
import { HerdConfigSchema } from '../../lib/herd/config.js'
import { startHerd } from '../../lib/herd/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { blobKey } from '../../lib/origin/server/keys.js'
import { randomFile, tempDir } from '../helpers/files.js'
import { until } from '../helpers/origin-procs.js'
import { S3RVER_CREDENTIALS, type S3Server, startS3rver } from '../helpers/s3rver.js'

let s3: S3Server
t.before(async () => {
  s3 = await startS3rver('shoal-herd')
})
t.teardown(() => s3.close())

const herdConfig = (dir: string, origin: Record<string, unknown>) =>
  validateConfig(HerdConfigSchema, {
    dataDir: join(dir, 'herd'),
    bindHost: '127.0.0.1',
    basePort: 0,
    log: { level: 'silent' },
    origin,
  })

t.test('a herd whose origin section names an S3 backend writes blobs to the bucket', async (t) => {
  const dir = await tempDir(t)
  const herd = await startHerd(
    herdConfig(dir, {
      backend: { type: 's3', bucket: s3.bucket, endpoint: s3.endpoint, credentials: S3RVER_CREDENTIALS },
      // One namespace stays on a folder: the namespaces table applies as in shoal-origin.
      namespaces: [{ namespace: 'scratch-.*', backend: { type: 'fs', root: join(dir, 'scratch') } }],
    }),
    { logger: silentLogger() },
  )
  t.teardown(() => herd.stop())
  const src = join(dir, 'a.bin')
  await randomFile(src, 3 << 20)
  const pushed = await push({ srcPath: src, srcHost: 'h', dstHost: herd.urls.proxy })
  const direct = s3.backend()
  const key = blobKey('default', pushed.digest)
  await until('the blob is in the bucket', async () => (await direct.stat(key))?.size === 3 << 20)
  const hash = createHash('sha256')
  for await (const chunk of await direct.get(key)) hash.update(chunk as Buffer)
  t.equal(hash.digest('hex'), pushed.digest.hex, 'byte-identical in S3')
  t.equal(await new FsBackend(join(dir, 'herd', 'backend')).stat(key), undefined, 'not in the herd folder')
})

t.test('a herd with a missing bucket stops at start with the one-line reason', async (t) => {
  const dir = await tempDir(t)
  const config = herdConfig(dir, {
    backend: { type: 's3', bucket: 'absent-bucket', endpoint: s3.endpoint, credentials: S3RVER_CREDENTIALS },
  })
  await t.rejects(startHerd(config, { logger: silentLogger() }), {
    code: 'BACKEND_ERROR',
    message: /absent-bucket.*the bucket does not exist/,
  })
})
