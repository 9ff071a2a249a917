/**
 * The suite every ResourceStore must pass (the file store and the Redis store). `make` gives a
 * fresh, empty, started store; `reopen` stops it and opens a new one on the same data (a
 * restart); `peer`, when the store can be shared, opens a second store on the same data that
 * runs next to the first (another process's view).
 */
import type { Test } from 'tap'
import { parseSelector } from '../../lib/apiserver/selectors.js'
import type { ResourceStore } from '../../lib/apiserver/store/types.js'
import type { Resource, ResourceInput } from '../../lib/apiserver/types.js'
import { isShoalError } from '../../lib/errors/index.js'
import { Gadget, take, Widget, widget } from '../helpers/resources.js'
import { resourceStoreWatchContract } from './resource-store-watch.contract.js'

export interface ResourceStoreFactoryOptions {
  historyEvents: number
}

export interface ResourceStoreHandle {
  store: ResourceStore
  reopen(): Promise<ResourceStore>
  peer?: () => Promise<ResourceStore>
  cleanup(): Promise<void>
}

export type ResourceStoreFactory = (opts: ResourceStoreFactoryOptions) => Promise<ResourceStoreHandle>

const codeOf = (err: unknown) => (isShoalError(err) ? err.code : String(err))

export function resourceStoreContract(t: Test, name: string, make: ResourceStoreFactory): void {
  const open = async (t: Test, opts: Partial<ResourceStoreFactoryOptions> = {}) => {
    const h = await make({ historyEvents: 1000, ...opts })
    t.teardown(() => h.cleanup())
    return h
  }
  const watchAbort = (t: Test) => {
    const ac = new AbortController()
    t.teardown(() => ac.abort())
    return ac.signal
  }

  resourceStoreWatchContract(t, name, open, watchAbort)

  t.test(`${name}: create, get, list, update, delete`, async (t) => {
    const { store } = await open(t)
    const a = await store.create(Widget, 'ns1', widget('a', 'h1', { app: 'x' }))
    t.equal(a.apiVersion, 'test.shoal.io/v1')
    t.equal(a.kind, 'Widget')
    t.match(a.metadata, { name: 'a', namespace: 'ns1', generation: 1, labels: { app: 'x' }, finalizers: [] })
    t.match(a.metadata.uid, /^[0-9a-f-]{36}$/)
    t.ok(Date.parse(a.metadata.creationTimestamp) > 0)
    t.same(a.spec, { host: 'h1', size: 0 }, 'the spec schema applied its default')
    t.same(await store.get(Widget, 'ns1', 'a'), a)
    await t.rejects(store.create(Widget, 'ns1', widget('a')), { code: 'ALREADY_EXISTS' })
    await t.rejects(store.get(Widget, 'ns1', 'zzz'), { code: 'NOT_FOUND' })
    await t.rejects(store.get(Widget, 'ns2', 'a'), { code: 'NOT_FOUND' }, 'namespaces are separate')
    await t.rejects(store.get(Gadget, 'ns1', 'a'), { code: 'NOT_FOUND' }, 'kinds are separate')
    await store.create(Widget, 'ns2', widget('a'))
    await store.create(Widget, 'ns1', widget('b'))
    const l1 = await store.list(Widget, { namespace: 'ns1' })
    t.same(
      l1.items.map((o) => o.metadata.name),
      ['a', 'b'],
    )
    t.equal(l1.kind, 'WidgetList')
    t.equal((await store.list(Widget)).items.length, 3, 'every namespace')
    const u = await store.update(Widget, 'ns1', { ...a, spec: { host: 'h2' } })
    t.equal(u.metadata.generation, 2)
    t.ok(Number(u.metadata.resourceVersion) > Number(a.metadata.resourceVersion))
    const d = await store.delete(Widget, 'ns1', 'a')
    t.equal(d.deleted, true)
    await t.rejects(store.get(Widget, 'ns1', 'a'), { code: 'NOT_FOUND' })
    await t.rejects(store.delete(Widget, 'ns1', 'a'), { code: 'NOT_FOUND' })
    await t.rejects(store.update(Widget, 'ns1', widget('a')), { code: 'NOT_FOUND' })
  })

  t.test(`${name}: one global resourceVersion, increasing; list answers it`, async (t) => {
    const { store } = await open(t)
    const rvs: number[] = []
    for (let i = 0; i < 5; i++) {
      rvs.push(
        Number((await store.create(i % 2 ? Widget : Gadget, 'ns', widget(`o${i}`))).metadata.resourceVersion),
      )
    }
    for (let i = 1; i < rvs.length; i++)
      t.equal(rvs[i], (rvs[i - 1] as number) + 1, 'one step per write, across kinds')
    t.equal((await store.list(Widget)).metadata.resourceVersion, String(rvs[4]))
    t.equal(await store.resourceVersion(), String(rvs[4]))
  })

  t.test(`${name}: validation answers INVALID`, async (t) => {
    const { store } = await open(t)
    const bad: [string, ResourceInput][] = [
      ['upper-case name', widget('Bad')],
      ['name with a slash', widget('a/b')],
      ['long name', widget('a'.repeat(254))],
      ['label key', widget('a', 'h', { 'bad key': 'v' })],
      ['label value', widget('a', 'h', { k: 'v v' })],
      [
        'too many labels',
        widget('a', 'h', Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']))),
      ],
      ['spec schema', { metadata: { name: 'a' }, spec: { host: '' } }],
      ['unknown spec key', { metadata: { name: 'a' }, spec: { host: 'h', nope: 1 } }],
      ['resourceVersion on create', widget('a', 'h', {}, { resourceVersion: '5' })],
      ['another namespace', widget('a', 'h', {}, { namespace: 'other' })],
      ['oversized', widget('a', 'h', {}, { annotations: { big: 'x'.repeat(600 * 1024) } })],
      ['wrong kind', { ...widget('a'), kind: 'Gadget' }],
    ]
    for (const [why, input] of bad)
      await t.rejects(store.create(Widget, 'ns', input), { code: 'INVALID' }, why)
    await t.rejects(store.create(Widget, 'Bad_NS', widget('a')), { code: 'INVALID' }, 'namespace')
    t.equal((await store.list(Widget)).items.length, 0, 'nothing was written')
  })

  t.test(`${name}: a stale resourceVersion answers CONFLICT; racing writers: one wins`, async (t) => {
    const { store } = await open(t)
    const a = await store.create(Widget, 'ns', widget('a'))
    const b = await store.update(Widget, 'ns', { ...a, metadata: { ...a.metadata, labels: { v: '2' } } })
    await t.rejects(store.update(Widget, 'ns', { ...a, spec: { host: 'h9' } }), { code: 'CONFLICT' })
    await t.rejects(store.updateStatus(Widget, 'ns', { ...a, status: { phase: 'Done' } }), {
      code: 'CONFLICT',
    })
    await t.rejects(store.delete(Widget, 'ns', 'a', { resourceVersion: a.metadata.resourceVersion }), {
      code: 'CONFLICT',
    })
    await t.rejects(store.delete(Widget, 'ns', 'a', { uid: 'not-the-uid' }), { code: 'CONFLICT' })
    for (let round = 0; round < 10; round++) {
      const cur = await store.get(Widget, 'ns', 'a')
      const results = await Promise.allSettled(
        [1, 2, 3].map((n) => store.update(Widget, 'ns', { ...cur, spec: { host: `w${round}-${n}` } })),
      )
      const won = results.filter((r) => r.status === 'fulfilled')
      t.equal(won.length, 1, `round ${round}: exactly one writer wins`)
      for (const r of results) if (r.status === 'rejected') t.equal(codeOf(r.reason), 'CONFLICT')
    }
    t.equal((await store.get(Widget, 'ns', 'a')).metadata.generation, b.metadata.generation + 10)
    // Without a resourceVersion, writes apply to whatever is stored: none is lost.
    const cur = await store.get(Widget, 'ns', 'a')
    const { resourceVersion: _, ...meta } = cur.metadata
    await Promise.all(
      [1, 2, 3, 4].map((n) => store.patch(Widget, 'ns', 'a', { metadata: { labels: { [`p${n}`]: 'x' } } })),
    )
    const after = await store.get(Widget, 'ns', 'a')
    t.same(Object.keys(after.metadata.labels).sort(), ['p1', 'p2', 'p3', 'p4', 'v'])
    t.ok(meta.uid)
  })

  t.test(`${name}: generation moves with spec only; status is its own subresource`, async (t) => {
    const { store } = await open(t)
    const a = await store.create(Widget, 'ns', { ...widget('a'), status: { phase: 'Done' } })
    t.equal(a.status, undefined, 'create does not take status')
    const s = await store.updateStatus(Widget, 'ns', {
      ...a,
      spec: { host: 'changed' },
      status: { phase: 'Running' },
    })
    t.same(s.status, { phase: 'Running' })
    t.same(s.spec, a.spec, 'a status update never changes spec')
    t.equal(s.metadata.generation, 1)
    t.ok(Number(s.metadata.resourceVersion) > Number(a.metadata.resourceVersion))
    await t.rejects(store.updateStatus(Widget, 'ns', { ...s, status: { phase: 'Bogus' } }), {
      code: 'INVALID',
    })
    const l = await store.update(Widget, 'ns', {
      ...s,
      metadata: { ...s.metadata, labels: { x: 'y' } },
      status: { phase: 'Pending' },
    })
    t.equal(l.metadata.generation, 1, 'metadata changes keep generation')
    t.same(l.status, { phase: 'Running' }, 'an update keeps status')
    const same = await store.update(Widget, 'ns', l)
    t.equal(same.metadata.resourceVersion, l.metadata.resourceVersion, 'a no-op update writes nothing')
    const g = await store.update(Widget, 'ns', { ...l, spec: { host: 'h2', size: 3 } })
    t.equal(g.metadata.generation, 2)
    const p = await store.patch(Widget, 'ns', 'a', { spec: { size: 4 } })
    t.same(p.spec, { host: 'h2', size: 4 }, 'merge patch')
    t.equal(p.metadata.generation, 3)
    const ps = await store.patch(Widget, 'ns', 'a', { status: { note: 'hi' } }, { status: true })
    t.same(ps.status, { phase: 'Running', note: 'hi' })
    t.equal(ps.metadata.generation, 3)
    await t.rejects(
      store.patch(Widget, 'ns', 'a', {
        metadata: { resourceVersion: a.metadata.resourceVersion },
        spec: { size: 9 },
      }),
      {
        code: 'CONFLICT',
      },
    )
  })

  t.test(`${name}: finalizers hold a delete`, async (t) => {
    const { store } = await open(t)
    const a = await store.create(
      Widget,
      'ns',
      widget('a', 'h1', {}, { finalizers: ['test.shoal.io/cleanup', 'other'] }),
    )
    const w = await store.watch(Widget, {
      resourceVersion: a.metadata.resourceVersion,
      signal: watchAbort(t),
    })
    const d = await store.delete(Widget, 'ns', 'a')
    t.equal(d.deleted, false)
    t.ok(d.object.metadata.deletionTimestamp)
    const held = await store.get(Widget, 'ns', 'a')
    t.equal(held.metadata.deletionTimestamp, d.object.metadata.deletionTimestamp, 'still there, marked')
    t.equal(
      (await store.delete(Widget, 'ns', 'a')).object.metadata.resourceVersion,
      held.metadata.resourceVersion,
      'a second delete changes nothing',
    )
    await t.rejects(
      store.update(Widget, 'ns', {
        ...held,
        metadata: { ...held.metadata, finalizers: [...held.metadata.finalizers, 'new'] },
      }),
      { code: 'INVALID' },
      'no new finalizer on an object being deleted',
    )
    const one = await store.patch(Widget, 'ns', 'a', { metadata: { finalizers: ['other'] } })
    t.same(one.metadata.finalizers, ['other'])
    await store.patch(Widget, 'ns', 'a', { metadata: { finalizers: [] } })
    await t.rejects(store.get(Widget, 'ns', 'a'), { code: 'NOT_FOUND' }, 'gone with its last finalizer')
    const ev = await take(await w, 3)
    t.same(
      ev.map((e) => e.type),
      ['MODIFIED', 'MODIFIED', 'DELETED'],
    )
  })

  t.test(`${name}: label and field selectors filter list and watch`, async (t) => {
    const { store } = await open(t)
    const start = await store.resourceVersion()
    await store.create(Widget, 'ns', widget('a', 'h1', { app: 'web', tier: 'front' }))
    await store.create(Widget, 'ns', widget('b', 'h2', { app: 'db' }))
    await store.create(Widget, 'ns', widget('c', 'h1', { app: 'cache', tier: 'back' }))
    await store.create(Widget, 'ns2', widget('d', 'h1'))
    const names = async (labelSelector?: string, fieldSelector?: string, ns: string | null = 'ns') =>
      (
        await store.list(Widget, {
          namespace: ns ?? undefined,
          selector: parseSelector(Widget, { labelSelector, fieldSelector }),
        })
      ).items.map((o) => o.metadata.name)
    t.same(await names('app=web'), ['a'])
    t.same(await names('app==web'), ['a'])
    t.same(await names('app!=web'), ['b', 'c'])
    t.same(await names('app in (web, db)'), ['a', 'b'])
    t.same(await names('app notin (web,db)'), ['c'])
    t.same(await names('tier'), ['a', 'c'])
    t.same(await names('!tier'), ['b'])
    t.same(await names('tier,app=cache'), ['c'])
    t.same(await names(undefined, 'spec.host=h1'), ['a', 'c'])
    t.same(await names(undefined, 'spec.host!=h1'), ['b'])
    t.same(await names(undefined, 'metadata.name=b'), ['b'])
    t.same(await names(undefined, 'metadata.namespace=ns2', null), ['d'])
    t.throws(() => parseSelector(Widget, { labelSelector: 'app in (web' }), { code: 'INVALID' })
    t.throws(() => parseSelector(Widget, { labelSelector: '==x' }), { code: 'INVALID' })
    t.throws(
      () => parseSelector(Widget, { fieldSelector: 'spec.size=1' }),
      { code: 'INVALID' },
      'not a declared field',
    )
    // Watch with selectors: leaving and entering the selection read as DELETED and ADDED.
    const w = await store.watch(Widget, {
      resourceVersion: start,
      namespace: 'ns',
      selector: parseSelector(Widget, { fieldSelector: 'spec.host=h1', labelSelector: 'app' }),
      signal: watchAbort(t),
    })
    await store.patch(Widget, 'ns', 'a', { spec: { host: 'h3' } })
    await store.patch(Widget, 'ns', 'b', { spec: { host: 'h1' } })
    await store.patch(Widget, 'ns', 'c', { metadata: { labels: { extra: 'x' } } })
    const ev = await take(w, 5)
    t.same(
      ev.map((e) => `${e.type} ${e.object.metadata.name}`),
      ['ADDED a', 'ADDED c', 'DELETED a', 'ADDED b', 'MODIFIED c'],
    )
  })

  t.test(`${name}: paging with limit and continue`, async (t) => {
    const { store } = await open(t)
    for (let i = 0; i < 7; i++) await store.create(Widget, 'ns', widget(`o${i}`, i % 2 ? 'odd' : 'even'))
    const seen: string[] = []
    let cont: string | undefined
    do {
      const page = await store.list(Widget, { namespace: 'ns', limit: 3, continue: cont })
      t.ok(page.items.length <= 3)
      seen.push(...page.items.map((o) => o.metadata.name))
      cont = page.metadata.continue
    } while (cont)
    t.same(seen, ['o0', 'o1', 'o2', 'o3', 'o4', 'o5', 'o6'])
    const even = await store.list(Widget, {
      limit: 2,
      selector: parseSelector(Widget, { fieldSelector: 'spec.host=even' }),
    })
    t.same(
      even.items.map((o) => o.metadata.name),
      ['o0', 'o2'],
      'the limit counts matching items',
    )
    await t.rejects(store.list(Widget, { continue: 'garbage!' }), { code: 'INVALID' })
  })

  t.test(`${name}: a restart keeps everything`, async (t) => {
    const h = await open(t)
    const a = await h.store.create(Widget, 'ns', widget('a', 'h1', { k: 'v' }, { finalizers: ['f'] }))
    await h.store.updateStatus(Widget, 'ns', { ...a, status: { phase: 'Running' } })
    for (let i = 0; i < 30; i++) await h.store.create(Widget, 'ns', widget(`b${i}`))
    await h.store.delete(Widget, 'ns', 'b3')
    await h.store.delete(Widget, 'ns', 'a')
    const before = await h.store.list(Widget)
    const mid = String(Number(before.metadata.resourceVersion) - 3)
    const store = await h.reopen()
    const after = await store.list(Widget)
    t.same(after, before, 'same objects, same resourceVersion')
    const next = await store.create(Widget, 'ns', widget('c'))
    t.equal(
      Number(next.metadata.resourceVersion),
      Number(before.metadata.resourceVersion) + 1,
      'the counter goes on',
    )
    const ev = await take(await store.watch(Widget, { resourceVersion: mid, signal: watchAbort(t) }), 4)
    t.same(
      ev.map((e) => `${e.type} ${e.object.metadata.name}`),
      ['ADDED b29', 'DELETED b3', 'MODIFIED a', 'ADDED c'],
    )
    t.equal(ev[3]?.object.metadata.name, 'c', 'history survives the restart too')
  })

  t.test(`${name}: a second store on the same data sees every change`, async (t) => {
    const h = await open(t)
    if (!h.peer) {
      t.pass('this store is not shared between processes')
      return
    }
    const other = await h.peer()
    const rv = await h.store.resourceVersion()
    const w = await other.watch(Widget, { resourceVersion: rv, signal: watchAbort(t) })
    const a = await h.store.create(Widget, 'ns', widget('a'))
    t.same(await other.get(Widget, 'ns', 'a'), a)
    await other.patch(Widget, 'ns', 'a', { spec: { size: 1 } })
    await h.store.delete(Widget, 'ns', 'a')
    const ev = await take(w, 3)
    t.same(
      ev.map((e) => e.type),
      ['ADDED', 'MODIFIED', 'DELETED'],
    )
    const cur = await h.store.create(Widget, 'ns', widget('race'))
    const r = await Promise.allSettled([
      h.store.update(Widget, 'ns', { ...cur, spec: { host: 'x' } }),
      other.update(Widget, 'ns', { ...cur, spec: { host: 'y' } }),
    ])
    t.equal(r.filter((x) => x.status === 'fulfilled').length, 1, 'one of two stores wins')
  })
}

export type { Resource }
