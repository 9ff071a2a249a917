/**
 * The suite every PeerStore must pass (memory now, Redis later). `make` builds a fresh, empty
 * store with the given bounds; `cleanup` releases whatever else it started.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import type { PeerRecord, PeerStore } from '../../lib/tracker/peerstore/types.js'

export interface PeerStoreFactoryOptions {
  maxPeersPerInfoHash: number
  /** Bound over all swarms; the store's default when absent. */
  maxPeers?: number
}

export type PeerStoreFactory = (
  opts: PeerStoreFactoryOptions,
) => Promise<{ store: PeerStore; cleanup(): Promise<void> }>

const IH = 'a'.repeat(40)
const IH2 = 'b'.repeat(40)
const TTL = 60_000

export function peerId(n: number): string {
  return n.toString(16).padStart(40, '0')
}

export function peer(n: number, over: Partial<PeerRecord> = {}): PeerRecord {
  return {
    peerId: peerId(n),
    ip: `10.0.${(n >> 8) & 255}.${n & 255}`,
    port: 6881,
    complete: false,
    origin: false,
    ...over,
  }
}

export function peerStoreContract(t: Test, name: string, make: PeerStoreFactory): void {
  const open = async (t: Test, opts: Partial<PeerStoreFactoryOptions> = {}) => {
    const { store, cleanup } = await make({ maxPeersPerInfoHash: 5000, ...opts })
    t.teardown(async () => {
      await store.close()
      await cleanup()
    })
    return store
  }

  t.test(`${name}: announce, list, counts`, async (t) => {
    const store = await open(t)
    t.same(await store.peers(IH, 10), [], 'unknown swarm is empty')
    t.same(await store.counts(IH), { complete: 0, incomplete: 0 })
    await store.announce(IH, peer(1), TTL)
    await store.announce(IH, peer(2, { complete: true }), TTL)
    await store.announce(IH, peer(3, { complete: true, origin: true }), TTL)
    const got = await store.peers(IH, 10)
    t.equal(got.length, 3)
    t.same(
      got.find((p) => p.peerId === peerId(2)),
      peer(2, { complete: true }),
      'records come back field for field',
    )
    t.same(await store.counts(IH), { complete: 2, incomplete: 1 }, 'origins count as complete')
    t.same(await store.peers(IH2, 10), [], 'swarms are separate')
    const stats = await store.stats()
    t.same(stats, { swarms: 1, origins: 1, seeders: 1, leechers: 1 })
  })

  t.test(`${name}: re-announce updates in place`, async (t) => {
    const store = await open(t)
    await store.announce(IH, peer(1), TTL)
    await store.announce(IH, peer(1, { complete: true, port: 7000 }), TTL)
    const got = await store.peers(IH, 10)
    t.same(got, [peer(1, { complete: true, port: 7000 })], 'one record per peer id, with the new values')
    t.same(await store.counts(IH), { complete: 1, incomplete: 0 })
  })

  t.test(`${name}: a new peer id at the same ip:port replaces the old record`, async (t) => {
    const store = await open(t)
    await store.announce(IH, peer(1, { ip: '10.9.9.9', port: 7000 }), TTL)
    await store.announce(IH, peer(2, { ip: '10.9.9.9', port: 7000 }), TTL)
    const got = await store.peers(IH, 10)
    t.same(
      got.map((p) => p.peerId),
      [peerId(2)],
    )
    await store.announce(IH, peer(3, { ip: '10.9.9.9', port: 7001 }), TTL)
    t.equal((await store.peers(IH, 10)).length, 2, 'another port is another peer')
  })

  // Peer ids are chosen by peers and visible in non-compact responses: anyone could copy an
  // origin's. A record is therefore tied to (peer id, ip); the same id from another ip is a
  // separate peer, which can neither replace nor remove the original.
  t.test(
    `${name}: a record belongs to its peer id *and* ip; another ip cannot replace or remove it`,
    async (t) => {
      const store = await open(t)
      const genuine = peer(1, { ip: '10.0.0.1', complete: true, origin: true })
      const forged = peer(1, { ip: '10.6.6.6', port: 6881, complete: false, origin: false })
      await store.announce(IH, genuine, TTL)
      await store.announce(IH, forged, TTL)
      const byIp = (list: PeerRecord[]) => [...list].sort((a, b) => a.ip.localeCompare(b.ip))
      t.same(
        byIp(await store.peers(IH, 10)),
        [genuine, forged],
        'the same peer id from another ip is a separate record; the genuine one is unchanged',
      )
      t.same(await store.counts(IH), { complete: 1, incomplete: 1 })
      await store.remove(IH, peerId(1), '10.6.6.6')
      t.same(await store.peers(IH, 10), [genuine], 'a stop from the other ip removes only its own record')
      await store.remove(IH, peerId(1), '10.7.7.7')
      t.same(await store.peers(IH, 10), [genuine], 'a stop from an ip without a record removes nothing')
      await store.announce(IH, { ...genuine, port: 7000, complete: false }, TTL)
      t.same(
        await store.peers(IH, 10),
        [{ ...genuine, port: 7000, complete: false }],
        'the owner (same id, same ip) still updates its record',
      )
      await store.remove(IH, peerId(1), '10.0.0.1')
      t.same(await store.counts(IH), { complete: 0, incomplete: 0 }, 'and removes it')
    },
  )

  t.test(`${name}: remove`, async (t) => {
    const store = await open(t)
    await store.announce(IH, peer(1), TTL)
    await store.announce(IH, peer(2), TTL)
    await store.remove(IH, peerId(1), peer(1).ip)
    t.same(
      (await store.peers(IH, 10)).map((p) => p.peerId),
      [peerId(2)],
    )
    await t.resolves(async () => {
      await store.remove(IH, peerId(99), peer(99).ip)
      await store.remove(IH2, peerId(1), peer(1).ip)
    }, 'removing unknown peers and swarms is not an error')
    await store.remove(IH, peerId(2), peer(2).ip)
    t.same(await store.counts(IH), { complete: 0, incomplete: 0 })
    t.equal((await store.stats()).swarms, 0, 'an emptied swarm is gone')
  })

  t.test(`${name}: limit and class order`, async (t) => {
    const store = await open(t)
    for (let i = 0; i < 20; i++) await store.announce(IH, peer(100 + i), TTL)
    for (let i = 0; i < 5; i++) await store.announce(IH, peer(200 + i, { complete: true }), TTL)
    for (let i = 0; i < 2; i++) await store.announce(IH, peer(300 + i, { complete: true, origin: true }), TTL)
    const got = await store.peers(IH, 10)
    t.equal(got.length, 10, 'limit respected')
    const classes = got.map((p) => (p.origin ? 0 : p.complete ? 1 : 2))
    t.same(classes, [...classes].sort(), 'origins, then seeders, then leechers')
    t.equal(classes.filter((c) => c === 0).length, 2, 'every origin fits')
    t.equal(classes.filter((c) => c === 1).length, 5, 'every seeder fits')
    t.same(await store.peers(IH, 0), [], 'limit 0')
    // The leecher sample varies: over many draws more than 8 distinct leechers show up.
    const seen = new Set<string>()
    for (let i = 0; i < 30; i++)
      for (const p of await store.peers(IH, 10)) if (!p.complete) seen.add(p.peerId)
    t.ok(seen.size > 8, `leechers are sampled, not always the same (${seen.size} seen)`)
  })

  t.test(`${name}: expiry`, async (t) => {
    const store = await open(t)
    await store.announce(IH, peer(1), 150)
    await store.announce(IH, peer(2, { complete: true }), 150)
    await store.announce(IH, peer(3), TTL)
    t.equal((await store.peers(IH, 10)).length, 3)
    await sleep(300)
    t.same(
      (await store.peers(IH, 10)).map((p) => p.peerId),
      [peerId(3)],
      'expired peers are never handed out',
    )
    t.same(await store.counts(IH), { complete: 0, incomplete: 1 }, 'nor counted')
    await store.announce(IH, peer(1), TTL)
    t.equal((await store.peers(IH, 10)).length, 2, 'an expired peer that announces again is back')
  })

  t.test(`${name}: bounded per infohash, oldest evicted`, async (t) => {
    const store = await open(t, { maxPeersPerInfoHash: 10 })
    for (let i = 0; i < 25; i++) await store.announce(IH, peer(i), TTL)
    const ids = (await store.peers(IH, 100)).map((p) => p.peerId).sort()
    t.equal(ids.length, 10, 'never more than the bound')
    t.same(
      ids,
      Array.from({ length: 10 }, (_, i) => peerId(15 + i)),
      'the most recent announcers stay',
    )
    // A peer that keeps announcing is not the oldest any more.
    await store.announce(IH, peer(15), TTL)
    await store.announce(IH, peer(99), TTL)
    const after = (await store.peers(IH, 100)).map((p) => p.peerId)
    t.ok(after.includes(peerId(15)), 'a refreshed peer survives')
    t.notOk(after.includes(peerId(16)), 'the stalest one is evicted')
    t.same(await store.counts(IH), { complete: 0, incomplete: 10 })
  })

  t.test(`${name}: bounded over all swarms`, async (t) => {
    const store = await open(t, { maxPeers: 12 })
    // The latest swarm sorts first, so a store breaking ties by name would evict from it.
    const swarms = ['3', '2', '1'].map((c) => c.repeat(40))
    for (const [s, ih] of swarms.entries())
      for (let i = 0; i < 8; i++) await store.announce(ih, peer(s * 100 + i), TTL)
    const stats = await store.stats()
    t.equal(stats.leechers, 12, 'never more peers than maxPeers over all swarms')
    let listed = 0
    for (const ih of swarms) listed += (await store.peers(ih, 100)).length
    t.equal(listed, 12, 'and the swarms hand out no more than that')
    t.equal((await store.peers(swarms[2] as string, 100)).length, 8, 'the latest swarm is whole')
  })

  t.test(`${name}: IPv6 peers round-trip`, async (t) => {
    const store = await open(t)
    await store.announce(IH, peer(1, { ip: '2001:db8::1', port: 7000 }), TTL)
    t.same(await store.peers(IH, 10), [peer(1, { ip: '2001:db8::1', port: 7000 })])
  })

  t.test(`${name}: a zone's peers come first within each class`, async (t) => {
    const store = await open(t)
    for (let i = 0; i < 3; i++) await store.announce(IH, peer(100 + i, { zone: 'rack-a' }), TTL)
    for (let i = 0; i < 20; i++) await store.announce(IH, peer(200 + i, { zone: 'rack-b' }), TTL)
    for (let i = 0; i < 20; i++) await store.announce(IH, peer(300 + i), TTL)
    for (let i = 0; i < 4; i++)
      await store.announce(IH, peer(400 + i, { complete: true, zone: i < 2 ? 'rack-a' : 'rack-b' }), TTL)
    await store.announce(IH, peer(500, { complete: true, origin: true, zone: 'rack-b' }), TTL)
    for (let run = 0; run < 10; run++) {
      const got = await store.peers(IH, 10, 'rack-a')
      t.equal(got.length, 10)
      const tags = got.map((p) => `${p.origin ? 0 : p.complete ? 1 : 2}${p.zone === 'rack-a' ? 'a' : '-'}`)
      t.same(
        tags.slice(0, 8),
        ['0-', '1a', '1a', '1-', '1-', '2a', '2a', '2a'],
        'origins first, then seeders and leechers, each class with rack-a first',
      )
      t.ok(
        tags.slice(8).every((x) => x === '2-'),
        'then leechers of other zones',
      )
    }
    t.same(
      (await store.peers(IH, 50)).find((p) => p.peerId === peerId(100)),
      peer(100, { zone: 'rack-a' }),
      'the zone comes back with the record',
    )
    const mine = await store.exchange(IH, peer(600, { zone: 'rack-a' }), TTL, 6)
    t.same(
      mine.peers.map((p) => p.zone === 'rack-a'),
      [false, true, true, false, false, true],
      'exchange samples for the announcing peer’s zone (itself included, as for peers())',
    )
    t.same(mine.counts, { complete: 5, incomplete: 44 })
    await t.rejects(store.announce(IH, peer(700, { zone: 'bad zone' }), TTL), { code: 'BAD_REQUEST' })
  })

  t.test(`${name}: close is idempotent and later calls fail clearly`, async (t) => {
    const { store, cleanup } = await make({ maxPeersPerInfoHash: 5000 })
    t.teardown(cleanup)
    await store.announce(IH, peer(1), TTL)
    await store.close()
    await store.close()
    await t.rejects(store.peers(IH, 10), { name: 'ShoalError', code: 'UNAVAILABLE' })
    await t.rejects(store.announce(IH, peer(2), TTL), { code: 'UNAVAILABLE' })
  })
}
