/** The watch part of the ResourceStore suite (ordering, resume, GONE, bookmarks); see resource-store.contract.ts. */
import type { Test } from 'tap'
import type { ResourceStore } from '../../lib/apiserver/store/types.js'
import type { WatchEvent } from '../../lib/apiserver/types.js'
import { Gadget, take, Widget, widget } from '../helpers/resources.js'

export function resourceStoreWatchContract(
  t: Test,
  name: string,
  open: (t: Test, opts?: { historyEvents?: number }) => Promise<{ store: ResourceStore }>,
  watchAbort: (t: Test) => AbortSignal,
): void {
  t.test(`${name}: watch streams every change in order, from any resourceVersion`, async (t) => {
    const { store } = await open(t)
    const start = await store.resourceVersion()
    const w = await store.watch(Widget, { resourceVersion: start, signal: watchAbort(t) })
    const a = await store.create(Widget, 'ns', widget('a'))
    await store.create(Gadget, 'ns', widget('g')) // another kind: not in this watch
    const a2 = await store.update(Widget, 'ns', { ...a, spec: { host: 'h2' } })
    await store.delete(Widget, 'ns', 'a')
    const writes = Array.from({ length: 40 }, (_, i) => store.create(Widget, 'ns', widget(`n${i}`)))
    await Promise.all(writes)
    const ev = await take(await w, 43)
    t.same(
      ev.slice(0, 3).map((e) => e.type),
      ['ADDED', 'MODIFIED', 'DELETED'],
    )
    t.equal(ev[1]?.object.metadata.resourceVersion, a2.metadata.resourceVersion)
    const rvs = ev.map((e) => Number(e.object.metadata.resourceVersion))
    t.ok(
      rvs.every((rv, i) => i === 0 || rv > (rvs[i - 1] as number)),
      'strictly increasing: no duplicates',
    )
    t.same(new Set(ev.slice(3).map((e) => e.object.metadata.name)).size, 40, 'no gaps')
    // Resuming from the middle gives exactly what followed.
    const mid = ev[20] as WatchEvent
    const again = await take(
      await store.watch(Widget, {
        resourceVersion: mid.object.metadata.resourceVersion,
        signal: watchAbort(t),
      }),
      22,
    )
    t.same(
      again.map((e) => e.object.metadata.resourceVersion),
      ev.slice(21).map((e) => e.object.metadata.resourceVersion),
    )
    // Without a resourceVersion: the current objects first, then changes.
    const fresh = await store.watch(Widget, { namespace: 'ns', signal: watchAbort(t) })
    await store.create(Widget, 'ns', widget('late'))
    const f = await take(fresh, 41)
    t.ok(f.slice(0, 40).every((e) => e.type === 'ADDED'))
    t.equal(f[40]?.object.metadata.name, 'late')
  })

  t.test(`${name}: a resourceVersion older than the history answers GONE`, async (t) => {
    const { store } = await open(t, { historyEvents: 10 })
    const first = await store.create(Widget, 'ns', widget('a'))
    for (let i = 0; i < 60; i++) await store.patch(Widget, 'ns', 'a', { spec: { size: i + 1 } })
    await t.rejects(store.watch(Widget, { resourceVersion: first.metadata.resourceVersion }), {
      code: 'GONE',
    })
    await t.rejects(store.watch(Widget, { resourceVersion: '0' }), { code: 'GONE' })
    await t.rejects(store.watch(Widget, { resourceVersion: 'abc' }), { code: 'INVALID' })
    const recent = await store.resourceVersion()
    const w = await store.watch(Widget, {
      resourceVersion: String(Number(recent) - 5),
      signal: watchAbort(t),
    })
    t.equal((await take(w, 5)).length, 5, 'a recent one still works')
  })

  t.test(`${name}: bookmarks carry the watch's resourceVersion`, async (t) => {
    const { store } = await open(t)
    await store.create(Gadget, 'ns', widget('g'))
    const rv = await store.resourceVersion()
    const w = await store
      .watch(Widget, { resourceVersion: '0', bookmarkIntervalMs: 50, signal: watchAbort(t) })
      .catch(() =>
        store.watch(Widget, { resourceVersion: rv, bookmarkIntervalMs: 50, signal: watchAbort(t) }),
      )
    const [b] = await take(w, 1, { bookmarks: true })
    t.equal(b?.type, 'BOOKMARK')
    t.equal(b?.object.metadata.resourceVersion, rv, "past the other kind's change")
  })
}
