/**
 * The repair scheduler (lib/origin/server/repair.ts) against fakes: a burst of membership
 * changes makes one pass, a change during a pass restarts it, the rate is kept, and a ring of
 * one does nothing. Waits poll against deadlines.
 */
import t from 'tap'
import { Digest } from '../../lib/core/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { createRegistry } from '../../lib/metrics/index.js'
import { Repair, RepairConfig } from '../../lib/origin/server/repair.js'
import type { ReplicaResult, Replication } from '../../lib/origin/server/replication.js'
import { Work } from '../../lib/origin/server/work.js'
import type { BlobStore } from '../../lib/store/index.js'
import { metricValue, until } from '../helpers/writeback.js'

function setup(opts: { blobs: number; members?: string[]; settings?: Record<string, unknown> }) {
  const digests = Array.from({ length: opts.blobs }, (_, i) => Digest.fromBuffer(Buffer.from(`blob ${i}`)))
  const store = {
    async *list() {
      yield* digests
    },
    stat: async () => ({ size: 1 }),
  } as unknown as BlobStore
  const calls: { owner: string; digest: string; at: number }[] = []
  let gate: Promise<void> | undefined
  const replication = {
    namespaceOf: async () => 'default',
    ensure: async (owner: string, _ns: string, digest: Digest): Promise<ReplicaResult> => {
      calls.push({ owner, digest: digest.hex, at: Date.now() })
      await gate
      return 'copied'
    },
  } as unknown as Replication
  const members = opts.members ?? ['a:1', 'b:1']
  let signature = 'one'
  const registry = createRegistry('test')
  const work = new Work()
  const repair = new Repair({
    ring: { self: () => 'a:1', members: () => members, owners: () => members, isOwner: () => true },
    signature: () => signature,
    store,
    replication,
    work,
    log: silentLogger(),
    registry,
    settings: RepairConfig.parse({ settleSeconds: 0.05, ...opts.settings }),
  })
  return {
    repair,
    calls,
    registry,
    work,
    passes: (result: string) => metricValue(registry, 'shoal_origin_repair_passes_total', { result }),
    setSignature: (s: string) => {
      signature = s
    },
    hold: () => {
      let release = () => {}
      gate = new Promise<void>((r) => {
        release = r
      })
      return () => {
        gate = undefined
        release()
      }
    },
  }
}

t.test('a burst of changes makes one pass; each blob asks each other owner', async (t) => {
  const s = setup({ blobs: 5 })
  s.repair.start()
  t.teardown(() => s.work.stop(() => []).then(() => s.repair.stop()))
  for (let i = 0; i < 5; i++) s.repair.trigger(`change ${i}`)
  await until('the pass ends', async () => (await s.passes('done')) === 1)
  await s.repair.idle()
  t.equal(await s.passes('done'), 1, 'one pass for five changes')
  t.equal(s.calls.length, 5, 'one ensure per blob (one other owner)')
  t.ok(
    s.calls.every((c) => c.owner === 'b:1'),
    'never asks itself',
  )
  t.equal(await metricValue(s.registry, 'shoal_origin_repair_copied_total'), 5)
  t.equal(await metricValue(s.registry, 'shoal_origin_repair_pending'), 0)
})

t.test('a membership change is noticed by the watcher', async (t) => {
  const s = setup({ blobs: 2 })
  s.repair.start()
  t.teardown(() => s.work.stop(() => []).then(() => s.repair.stop()))
  s.setSignature('two')
  await until('a pass ran', async () => (await s.passes('done')) === 1, 5_000)
  t.equal(s.calls.length, 2)
})

t.test('a change during a pass ends it and a new pass starts over', async (t) => {
  const s = setup({ blobs: 8, settings: { concurrency: 1 } })
  s.repair.start()
  t.teardown(() => s.work.stop(() => []).then(() => s.repair.stop()))
  const release = s.hold()
  s.repair.trigger('first')
  await until('the first blob is being copied', () => s.calls.length === 1)
  s.repair.trigger('second')
  release()
  await until('the second pass ends', async () => (await s.passes('done')) === 1)
  await s.repair.idle()
  t.equal(await s.passes('restarted'), 1, 'the first pass was cut short')
  t.equal(s.calls.length, 1 + 8, 'the second pass checked every blob again')
})

t.test('blobsPerSecond paces the blobs that have other owners', async (t) => {
  const s = setup({ blobs: 11, settings: { blobsPerSecond: 50, concurrency: 4 } })
  s.repair.start()
  t.teardown(() => s.work.stop(() => []).then(() => s.repair.stop()))
  s.repair.trigger('go')
  await until('the pass ends', async () => (await s.passes('done')) === 1)
  const first = s.calls[0]?.at ?? 0
  const last = s.calls[s.calls.length - 1]?.at ?? 0
  // 11 blobs at 50/s: the last starts 10 intervals (200 ms) after the first.
  t.ok(last - first >= 190, `11 blobs took ${last - first} ms at 50 blobs/s`)
})

t.test('a ring of one does nothing', async (t) => {
  const s = setup({ blobs: 3, members: ['a:1'] })
  s.repair.start()
  t.teardown(() => s.work.stop(() => []).then(() => s.repair.stop()))
  s.repair.trigger('go')
  await s.repair.idle()
  t.equal(s.calls.length, 0)
  t.equal(await metricValue(s.registry, 'shoal_origin_repair_checked_total'), 0, 'not even walked')
})
