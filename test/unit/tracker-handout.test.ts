import t from 'tap'
import { MemoryPeerStore, type PeerRecord } from '../../lib/tracker/peerstore/index.js'
import { type AnnounceInput, Announcer, OriginSet, orderPeers } from '../../lib/tracker/server/handout.js'

const IH = 'c'.repeat(40)
const id = (n: number) => n.toString(16).padStart(40, '0')
const rec = (n: number, cls: 'origin' | 'seeder' | 'leecher'): PeerRecord => ({
  peerId: id(n),
  ip: `10.1.0.${n}`,
  port: 6881,
  complete: cls !== 'leecher',
  origin: cls === 'origin',
})
const classOf = (p: PeerRecord) => (p.origin ? 0 : p.complete ? 1 : 2)
const NOBODY = { peerIdHex: 'f'.repeat(40), ip: '10.255.255.255', port: 1 }

function input(n: number, over: Partial<AnnounceInput> = {}): AnnounceInput {
  return {
    infoHashHex: IH,
    peerIdHex: id(n),
    ip: `10.2.0.${n}`,
    socketIp: `10.2.0.${n}`,
    port: 7000,
    left: 1,
    event: '',
    numwant: 50,
    ...over,
  }
}

t.test('orderPeers: classes in order, shuffled within each class', async (t) => {
  const candidates = [
    ...[1, 2, 3, 4].map((n) => rec(n, 'leecher')),
    ...[10, 11, 12, 13].map((n) => rec(n, 'seeder')),
    ...[20, 21, 22].map((n) => rec(n, 'origin')),
  ]
  const orders: string[][] = [[], [], []]
  const interleaved: string[] = []
  for (let run = 0; run < 200; run++) {
    const out = orderPeers(candidates, NOBODY, 50)
    const classes = out.map(classOf)
    if (JSON.stringify(classes) !== JSON.stringify([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])) {
      interleaved.push(`run ${run}: ${classes}`)
    }
    for (const c of [0, 1, 2]) {
      orders[c]?.push(
        out
          .filter((p) => classOf(p) === c)
          .map((p) => p.peerId.slice(-2))
          .join(','),
      )
    }
  }
  t.same(interleaved, [], '200 runs: origins, then seeders, then leechers, never interleaved')
  for (const [c, name] of ['origins', 'seeders', 'leechers'].entries()) {
    const distinct = new Set(orders[c]).size
    t.ok(distinct > 3, `${name} come in varying orders (${distinct} distinct over 200 runs)`)
  }
})

t.test('orderPeers: numwant cap keeps the best classes', async (t) => {
  const candidates = [rec(1, 'leecher'), rec(2, 'leecher'), rec(10, 'seeder'), rec(20, 'origin')]
  const out = orderPeers(candidates, NOBODY, 2)
  t.same(out.map(classOf), [0, 1])
  t.same(orderPeers(candidates, NOBODY, 0), [])
})

t.test('orderPeers: the announcing peer is never handed itself', async (t) => {
  const candidates = [rec(1, 'seeder'), rec(2, 'leecher'), rec(3, 'leecher')]
  const byId = orderPeers(candidates, { peerIdHex: id(1), ip: '192.0.2.1', port: 1 }, 50)
  t.notOk(
    byId.some((p) => p.peerId === id(1)),
    'excluded by peer id',
  )
  const byAddr = orderPeers(candidates, { peerIdHex: 'e'.repeat(40), ip: '10.1.0.2', port: 6881 }, 50)
  t.same(byAddr.map((p) => p.peerId).sort(), [id(1), id(3)], 'excluded by ip:port')
  const otherPort = orderPeers(candidates, { peerIdHex: 'e'.repeat(40), ip: '10.1.0.2', port: 6882 }, 50)
  t.equal(otherPort.length, 3, 'same ip, other port is another peer')
})

t.test('Announcer: ordered handout end to end over the memory store', async (t) => {
  const store = new MemoryPeerStore({ sweepIntervalMs: 0 })
  t.teardown(() => store.close())
  const origins = new OriginSet([
    { ip: '10.9.0.1', port: 15001 },
    { ip: '10.9.0.2', port: 15001 },
  ])
  const a = new Announcer(store, origins, 60_000)
  for (let n = 1; n <= 6; n++) await a.announce(input(n))
  for (let n = 11; n <= 13; n++) await a.announce(input(n, { left: 0 }))
  await a.announce(input(14, { event: 'completed', left: 5 }))
  await a.announce(input(21, { ip: '10.9.0.1', socketIp: '10.9.0.1', port: 15001, left: 0 }))
  await a.announce(input(22, { ip: '10.9.0.2', socketIp: '10.9.0.2', port: 15001, left: 0 }))

  const out = await a.announce(input(30, { numwant: 50 }))
  t.same(
    out.peers.map(classOf),
    [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2],
    'origins, then complete (left=0 or event=completed), then the rest',
  )
  t.notOk(
    out.peers.some((p) => p.peerId === id(30)),
    'not itself',
  )
  t.same(
    { complete: out.complete, incomplete: out.incomplete },
    { complete: 6, incomplete: 7 },
    'counts include the announcer',
  )

  const capped = await a.announce(input(30, { numwant: 3 }))
  t.same(capped.peers.map(classOf), [0, 0, 1], 'numwant cap keeps origins and seeders first')

  const origin = await a.announce(input(21, { ip: '10.9.0.1', socketIp: '10.9.0.1', port: 15001, left: 0 }))
  t.same(
    origin.peers.filter((p) => p.origin).map((p) => p.peerId),
    [id(22)],
    'an origin is not handed itself either',
  )

  const stopped = await a.announce(input(30, { event: 'stopped' }))
  t.same(stopped.peers, [], 'stopped gets no peers')
  const after = await a.announce(input(1))
  t.notOk(
    after.peers.some((p) => p.peerId === id(30)),
    'a stopped peer is no longer handed out',
  )
})

t.test(
  "Announcer: an announce or stop with an origin's peer id from another address leaves it alone",
  async (t) => {
    const store = new MemoryPeerStore({ sweepIntervalMs: 0 })
    t.teardown(() => store.close())
    const a = new Announcer(store, new OriginSet([{ ip: '10.9.0.1', port: 15001 }]), 60_000)
    await a.announce(input(21, { ip: '10.9.0.1', socketIp: '10.9.0.1', port: 15001, left: 0 }))
    // The origin's id (visible in non-compact responses), announced and stopped from elsewhere.
    await a.announce(input(21, { ip: '10.6.6.6', socketIp: '10.6.6.6', port: 15001, left: 1 }))
    await a.announce(input(21, { ip: '10.6.6.6', socketIp: '10.6.6.6', port: 15001, event: 'stopped' }))
    await a.announce(input(21, { ip: '10.7.7.7', socketIp: '10.7.7.7', port: 15001, event: 'stopped' }))
    const out = await a.announce(input(9))
    t.same(
      out.peers.map((p) => [p.peerId, p.ip, p.origin]),
      [[id(21), '10.9.0.1', true]],
      'the origin is still handed out, as an origin',
    )
  },
)

t.test('Announcer: origin status only from config, from the socket address', async (t) => {
  const store = new MemoryPeerStore({ sweepIntervalMs: 0 })
  t.teardown(() => store.close())
  const a = new Announcer(store, new OriginSet([{ ip: '10.9.0.1', port: 15001 }]), 60_000)
  // Claims the origin's address through a trusted `ip` parameter: the socket says otherwise.
  await a.announce(input(1, { ip: '10.9.0.1', socketIp: '10.2.0.1', port: 15001, left: 0 }))
  // Right ip, wrong port.
  await a.announce(input(2, { ip: '10.9.0.1', socketIp: '10.9.0.1', port: 15002, left: 0 }))
  // A seeder is not an origin just because it has everything.
  await a.announce(input(3, { left: 0 }))
  const out = await a.announce(input(9))
  t.equal(out.peers.length, 3)
  t.notOk(
    out.peers.some((p) => p.origin),
    'nobody became an origin by claiming',
  )
  await a.announce(input(4, { ip: '10.9.0.1', socketIp: '10.9.0.1', port: 15001, left: 1 }))
  const again = await a.announce(input(9))
  t.equal(again.peers[0]?.peerId, id(4), 'the configured address is an origin, first even while incomplete')
  t.equal(classOf(again.peers[0] as PeerRecord), 0)
})

t.test('Announcer: expired peers are never handed out', async (t) => {
  let now = 1_000_000
  const store = new MemoryPeerStore({ sweepIntervalMs: 0, now: () => now })
  t.teardown(() => store.close())
  const a = new Announcer(store, new OriginSet(), 30_000)
  await a.announce(input(1))
  await a.announce(input(2, { left: 0 }))
  now += 20_000
  await a.announce(input(3))
  t.equal((await a.announce(input(9))).peers.length, 3)
  now += 15_000 // peers 1 and 2 are now 35 s old, past the 30 s TTL
  const out = await a.announce(input(9))
  t.same(
    out.peers.map((p) => p.peerId),
    [id(3)],
    'only the fresh peer',
  )
  t.same({ complete: out.complete, incomplete: out.incomplete }, { complete: 0, incomplete: 2 })
})

t.test('OriginSet.resolve: literals, names, and unresolvable names', async (t) => {
  const set = await OriginSet.resolve([
    '127.0.0.1:15001',
    'localhost:15009',
    '[::1]:15002',
    'no-such-host.invalid:1',
  ])
  t.ok(set.has('127.0.0.1', 15001))
  t.ok(set.has('127.0.0.1', 15009) || set.has('::1', 15009), 'a host name resolves')
  t.ok(set.has('::1', 15002), 'bracketed IPv6')
  t.notOk(set.has('127.0.0.1', 15002))
})

t.test('Announcer: an origin its health checks find down is left out of handouts', async (t) => {
  const store = new MemoryPeerStore({ sweepIntervalMs: 0 })
  t.teardown(() => store.close())
  const origins = new OriginSet([
    { ip: '10.9.0.1', port: 15001 },
    { ip: '10.9.0.2', port: 15001 },
  ])
  const down = new Set<string>()
  const a = new Announcer(store, origins, 60_000, { originDown: (ip, port) => down.has(`${ip}:${port}`) })
  await a.announce(input(21, { ip: '10.9.0.1', socketIp: '10.9.0.1', port: 15001, left: 0 }))
  await a.announce(input(22, { ip: '10.9.0.2', socketIp: '10.9.0.2', port: 15001, left: 0 }))
  await a.announce(input(1))
  const origin = (out: { peers: PeerRecord[] }) =>
    out.peers
      .filter((p) => p.origin)
      .map((p) => p.peerId)
      .sort()
  t.same(origin(await a.announce(input(30))), [id(21), id(22)], 'both healthy: both handed out')
  down.add('10.9.0.1:15001')
  const out = await a.announce(input(30))
  t.same(origin(out), [id(22)], 'the down one is not')
  t.ok(
    out.peers.some((p) => p.peerId === id(1)),
    'other peers still are',
  )
  down.clear()
  t.same(origin(await a.announce(input(30))), [id(21), id(22)], 'handed out again once healthy')
})
