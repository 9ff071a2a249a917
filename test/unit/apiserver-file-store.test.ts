/**
 * The file store's crash safety: a process killed mid-write loses nothing it acknowledged and
 * its stale LOCK is taken over; a torn last log line is cut off; a corrupt log or snapshot is
 * refused rather than half-loaded; a leftover temporary snapshot is ignored.
 */
import { spawn } from 'node:child_process'
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createResourceStore } from '../../lib/apiserver/store/index.js'
import { Widget, widget } from '../helpers/resources.js'

const open = async (dir: string) => {
  const s = createResourceStore({ type: 'file', dir, historyEvents: 100, compactEveryRecords: 1000 })
  await s.start()
  return s
}

const tmp = async (t: Tap) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-fs-store-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}
type Tap = { teardown(fn: () => unknown): void }

t.test('a process killed while writing loses nothing it acknowledged', async (t) => {
  const dir = await tmp(t)
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(import.meta.dirname, '../helpers/resource-writer.ts'), dir],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  t.teardown(() => child.kill('SIGKILL'))
  const acked: string[] = []
  let out = ''
  child.stdout.on('data', (d) => {
    out += d
    const lines = out.split('\n')
    out = lines.pop() as string
    for (const l of lines) if (l.startsWith('ok ')) acked.push(l.slice(3))
  })
  const deadline = Date.now() + 60_000
  while (acked.length < 300) {
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error(`writer acknowledged only ${acked.length}`)
    await new Promise((r) => setTimeout(r, 20))
  }
  const exited = new Promise((r) => child.once('exit', r))
  child.kill('SIGKILL')
  await exited
  const store = await open(dir) // the LOCK of the dead process is taken over
  t.teardown(() => store.stop())
  const names = new Set((await store.list(Widget)).items.map((o) => o.metadata.name))
  const lost = acked.filter((n) => !names.has(n))
  t.same(lost, [], `all ${acked.length} acknowledged creates survived`)
  const next = await store.create(Widget, 'ns', widget('after'))
  t.equal(Number(next.metadata.resourceVersion), names.size + 1, 'the counter goes on without reuse')
})

t.test('a torn last log line is cut off; a corrupt one is refused', async (t) => {
  const dir = await tmp(t)
  let store = await open(dir)
  await store.create(Widget, 'ns', widget('a'))
  await store.create(Widget, 'ns', widget('b'))
  await store.stop()
  await appendFile(join(dir, 'wal.ndjson'), '{"rv":3,"c":"test.shoal.io/widg')
  store = await open(dir)
  t.same(
    (await store.list(Widget)).items.map((o) => o.metadata.name),
    ['a', 'b'],
  )
  t.equal((await store.create(Widget, 'ns', widget('c'))).metadata.resourceVersion, '3')
  await store.stop()
  t.notMatch(await readFile(join(dir, 'wal.ndjson'), 'utf8'), /widg\{/, 'the torn bytes are gone')
  const wal = await readFile(join(dir, 'wal.ndjson'), 'utf8')
  const lines = wal.split('\n')
  lines[1] = 'garbage'
  await writeFile(join(dir, 'wal.ndjson'), lines.join('\n'))
  await t.rejects(open(dir), { code: 'IO_ERROR' }, 'a bad line in the middle is corruption, not a torn write')
})

t.test('snapshots: a leftover temporary one is ignored, a corrupt one refused', async (t) => {
  const dir = await tmp(t)
  const s = createResourceStore({ type: 'file', dir, historyEvents: 100, compactEveryRecords: 3 })
  await s.start()
  for (let i = 0; i < 7; i++) await s.create(Widget, 'ns', widget(`o${i}`))
  await s.stop()
  await writeFile(
    join(dir, 'snapshot.ndjson.tmp'),
    '{"format":"shoal-resources-v1","rv":999,"count":50}\n{"c"',
  )
  let store = await open(dir)
  t.equal((await store.list(Widget)).items.length, 7)
  t.equal(await store.resourceVersion(), '7')
  await store.stop()
  const snap = await readFile(join(dir, 'snapshot.ndjson'), 'utf8')
  await writeFile(join(dir, 'snapshot.ndjson'), snap.split('\n').slice(0, 2).join('\n'))
  await t.rejects(open(dir), { code: 'IO_ERROR' }, 'a snapshot missing objects is not loaded')
  await writeFile(join(dir, 'snapshot.ndjson'), snap)
  store = await open(dir)
  t.equal((await store.list(Widget)).items.length, 7)
  await t.rejects(open(dir), { code: 'UNAVAILABLE' }, 'one engine per folder')
  await store.stop()
})
