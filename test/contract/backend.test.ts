import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { FsBackend } from '../../lib/backend/fs.js'
import { MemoryBackend } from '../../lib/backend/memory.js'
import { startS3rver } from '../helpers/s3rver.js'
import { backendContract } from './backend.contract.js'

backendContract(t, 'memory', async () => ({ backend: new MemoryBackend(), cleanup: async () => {} }))

backendContract(t, 'fs', async () => {
  const root = await mkdtemp(join(tmpdir(), 'shoal-fs-backend-'))
  return { backend: new FsBackend(root), cleanup: () => rm(root, { recursive: true, force: true }) }
})

t.test('fs: on-disk names are safe and temp files do not linger', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'shoal-fs-backend-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const b = new FsBackend(root)
  const long = 'é'.repeat(300)
  await b.put(`a/${long}/..x/%/.z`, Buffer.from('1'))
  await b.put('a/...', Buffer.from('2'))
  const names: string[] = []
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      names.push(e.name)
      if (e.isDirectory()) await walk(join(dir, e.name))
    }
  }
  await walk(root)
  t.ok(
    names.every((n) => Buffer.byteLength(n) <= 201),
    'no name longer than a chunk plus its marker',
  )
  t.ok(
    names.filter((n) => n !== '.tmp').every((n) => !n.startsWith('.')),
    'no name starts with a dot',
  )
  t.same(await readdir(join(root, '.tmp')), [], 'no temp files left behind')
})

t.test('s3 (s3rver)', async (t) => {
  const s3 = await startS3rver()
  t.teardown(() => s3.close())
  let n = 0
  // Each test gets its own prefix in the one bucket, so tests never see each other's keys.
  backendContract(
    t,
    's3',
    async () => ({ backend: s3.backend({ prefix: `t${++n}` }), cleanup: async () => {} }),
    { nestedKeyOrder: false, longSegments: false, readDuringOverwrite: false },
  )
})
