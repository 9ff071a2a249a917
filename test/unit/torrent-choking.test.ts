import t from 'tap'
import { Limiter, ManualClock } from '../../lib/bandwidth/index.js'
import type { MetaInfo } from '../../lib/core/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { Registry } from '../../lib/metrics/index.js'
import type { EngineMetrics } from '../../lib/torrent/engine/context.js'
import { Bitfield, BLOCK_SIZE, MemoryStorage } from '../../lib/torrent/index.js'
import { BlockPool } from '../../lib/torrent/upload/block-pool.js'
import { PeerUpload } from '../../lib/torrent/upload/peer-upload.js'
import { ServeOnce } from '../../lib/torrent/upload/serve-once.js'
import { Uploader } from '../../lib/torrent/upload/uploader.js'
import type { Peer } from '../../lib/torrent/wire/peer.js'

const PIECE = 4 * BLOCK_SIZE
const meta = {
  pieceCount: 4,
  pieceLength: PIECE,
  length: 4 * PIECE,
  pieceSize: () => PIECE,
} as unknown as MetaInfo

interface FakePeer extends Peer {
  /** The upload side's record, writable here as the test plays the peer's past. */
  up: PeerUpload
  name: string
  rejects: Array<[number, number, number]>
  pieces: Array<[number, number, number]>
  haves: number[]
  closedWith: string | undefined
}

function fakePeer(name: string, fast = true): FakePeer {
  const p = {
    name,
    addr: name,
    closed: false,
    fast,
    blockSize: BLOCK_SIZE,
    amChoking: true,
    amInterested: false,
    peerInterested: false,
    idleSince: 0,
    lastRecvAt: 0,
    up: new PeerUpload(16, false),
    socket: { writableNeedDrain: false },
    rejects: [] as Array<[number, number, number]>,
    pieces: [] as Array<[number, number, number]>,
    haves: [] as number[],
    closedWith: undefined as string | undefined,
    choke() {
      p.amChoking = true
    },
    unchoke() {
      p.amChoking = false
    },
    sendReject(i: number, o: number, l: number) {
      if (p.fast) p.rejects.push([i, o, l])
    },
    sendPiece(i: number, o: number, b: Buffer) {
      p.pieces.push([i, o, b.length])
    },
    sendHave(i: number) {
      p.haves.push(i)
    },
    close(why: string) {
      p.closed = true
      p.closedWith = why
    },
    waitDrain: async () => {},
  }
  return p as unknown as FakePeer
}

function metrics(): EngineMetrics {
  const r = new Registry()
  const c = { inc: () => {} }
  return { sent: c, evicted: c, receivedFrom: { origin: c, agent: c }, r } as unknown as EngineMetrics
}

function uploader(
  slots: number,
  have = Bitfield.full(4),
  serveOnce?: ServeOnce,
  idlePeerEvictMs = 30_000,
  clock = new ManualClock(),
) {
  const storage = MemoryStorage.complete(
    { length: meta.length, pieceLength: PIECE },
    Buffer.alloc(meta.length, 1),
  )
  return new Uploader({
    meta,
    storage,
    blocks: new BlockPool(PIECE, 4),
    have,
    slots,
    optimisticUnchokeMs: 15_000,
    slotIdleMs: 5_000,
    idlePeerEvictMs,
    metrics: metrics(),
    log: silentLogger(),
    serveOnce,
    clock,
  })
}

function interested(u: Uploader, p: FakePeer, now: number): void {
  p.peerInterested = true
  u.onInterested(p, now)
}

const names = (ps: FakePeer[]) =>
  ps
    .filter((p) => !p.amChoking)
    .map((p) => p.name)
    .sort()

t.test('every interested peer is unchoked up to the slot limit; the rest wait in order', async (t) => {
  const u = uploader(3)
  const peers = ['a', 'b', 'c', 'd', 'e'].map((n) => fakePeer(n))
  peers.forEach((p, i) => {
    interested(u, p, 1000 + i)
  })
  t.same(names(peers), ['a', 'b', 'c'], 'no reciprocation asked: the first three get slots')
  t.equal(u.slotsUsed, 3)
  t.equal(peers[3]!.up.waitingSince, 1003)
  u.onUninterested(peers[1]!, peers, 2000)
  t.same(names(peers), ['a', 'c', 'd'], 'a freed slot goes to the peer waiting longest')
  peers[0]!.closed = true
  u.onClosed(peers[0]!, peers, 2001)
  t.same(names(peers), ['c', 'd', 'e'], 'so does the slot of a peer that left')
  t.equal(u.slotsUsed, 3, 'bounded')
})

t.test('an unchoked peer that asks for nothing gives its slot to one that waits', async (t) => {
  const u = uploader(2)
  const [a, b, c] = ['a', 'b', 'c'].map((n) => fakePeer(n)) as [FakePeer, FakePeer, FakePeer]
  const peers = [a, b, c]
  interested(u, a, 1_000)
  interested(u, b, 1_000)
  interested(u, c, 1_000)
  t.same(names(peers), ['a', 'b'])
  b.up.lastRequestAt = 5_000 // b keeps asking; a never does
  u.tick(peers, 5_999)
  t.same(names(peers), ['a', 'b'], 'not idle for slotIdleMs yet')
  b.up.lastRequestAt = 6_000
  u.tick(peers, 6_000)
  t.same(names(peers), ['b', 'c'], 'the idle peer is choked, the waiting one unchoked')
  t.ok(a.up.waitingSince > 0, 'the idle peer, still interested, now waits its turn')
})

t.test('every idle slot goes to a waiting peer in one tick', async (t) => {
  const u = uploader(3)
  const peers = ['a', 'b', 'c', 'd', 'e', 'f'].map((n) => fakePeer(n))
  for (const p of peers) interested(u, p, 1_000)
  peers[2]!.up.lastRequestAt = 5_500 // c asks; a and b do not
  u.tick(peers, 6_000)
  t.same(names(peers), ['c', 'd', 'e'], 'both idle slots were handed on at once')
  t.ok(peers[0]!.up.wastedSince > 0 && peers[1]!.up.wastedSince > 0, 'a and b wasted their slots')
  t.equal(peers[2]!.up.wastedSince, 0, 'c did not')
})

t.test('a peer that wasted a slot waits behind peers that did not; listed peers go first', async (t) => {
  const u = uploader(2)
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => fakePeer(n)) as [
    FakePeer,
    FakePeer,
    FakePeer,
    FakePeer,
  ]
  interested(u, a, 1_000)
  interested(u, b, 1_000)
  interested(u, c, 1_000)
  interested(u, d, 1_000)
  u.tick([a, b, c, d], 6_000) // a and b never asked: c and d get their slots
  t.same(names([a, b, c, d]), ['c', 'd'])
  const e = fakePeer('e') // a newcomer, after a and b started waiting again
  interested(u, e, 6_500)
  c.up.lastRequestAt = 11_000
  u.tick([a, b, c, d, e], 12_000) // d idle since 6 s; c asked at 11 s
  t.same(names([a, b, c, d, e]), ['c', 'e'], 'the newcomer beats the peers that wasted a slot')

  const v = uploader(1)
  const [x, y, z] = ['x', 'y', 'z'].map((n) => fakePeer(n)) as [FakePeer, FakePeer, FakePeer]
  interested(v, z, 500)
  interested(v, x, 1_000)
  y.up.listed = true // in the tracker's answer
  interested(v, y, 2_000)
  z.peerInterested = false
  v.onUninterested(z, [x, y, z], 3_000)
  t.same(names([x, y, z]), ['y'], 'a peer the tracker handed out goes before one that waited longer')
})

t.test('a contended torrent closes peers that wasted a slot and asked for nothing since', async (t) => {
  const u = uploader(1, Bitfield.full(4), undefined, 10_000)
  const [a, b, c] = ['a', 'b', 'c'].map((n) => fakePeer(n)) as [FakePeer, FakePeer, FakePeer]
  const peers = [a, b, c]
  interested(u, a, 1_000)
  interested(u, b, 1_000)
  interested(u, c, 1_000)
  u.tick(peers, 6_000) // a wasted its slot; b gets it
  t.equal(a.up.wastedSince, 6_000)
  b.up.lastRequestAt = 7_000 // b uses it
  u.tick(peers, 15_000)
  t.notOk(a.closed, 'not before idlePeerEvictMs')
  u.tick(peers, 16_000)
  t.ok(a.closed, 'closed once idlePeerEvictMs passed while c waits')
  t.match(a.closedWith, /idle peer evicted/)
  t.notOk(b.closed || c.closed, 'peers that did not waste a slot stay')

  const v = uploader(4, Bitfield.full(4), undefined, 10_000)
  const [p, q] = [fakePeer('p'), fakePeer('q')]
  interested(v, p, 1_000)
  p.up.wastedSince = 2_000
  p.amChoking = true // as if its slot had been taken back; nobody waits now
  p.up.waitingSince = 0
  v.tick([p, q], 20_000)
  t.notOk(p.closed, 'uncontended: a waster stays')
  v.tick([p, q], 20_000, true)
  t.ok(p.closed, 'a full torrent is contended')

  const w = uploader(1, Bitfield.full(4), undefined, 10_000)
  const [r, s] = [fakePeer('r'), fakePeer('s')]
  interested(w, r, 1_000)
  r.up.wastedSince = 1_000 // wasted a slot before, and was given this one at 1 s
  interested(w, s, 1_000)
  r.up.lastRequestAt = 1_500
  w.tick([r, s], 20_000, true)
  t.notOk(r.closed, 'a waster that asks with its new slot is forgiven')
  t.equal(r.up.wastedSince, 0)
})

t.test('a full torrent makes room: victim() picks a peer that does not use its connection', async (t) => {
  const u = uploader(2)
  const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map((n) => fakePeer(n)) as FakePeer[] as [
    FakePeer,
    FakePeer,
    FakePeer,
    FakePeer,
    FakePeer,
  ]
  for (const p of [a, b, c, d]) interested(u, p, 1_000)
  t.equal(u.victim([a, b, c, d], 2_000), undefined, 'nobody has wasted anything yet')
  a.up.listed = true
  u.tick([a, b, c, d], 6_000) // a and b wasted their slots
  t.equal(u.victim([a, b, c, d], 6_000), b, 'a waster the tracker did not hand out goes first')
  t.equal(u.victim([a, c, d], 6_000), a, 'then a listed one')
  a.amInterested = true
  t.equal(u.victim([a, c, d], 6_000), undefined, 'never a peer we want pieces from')
  a.amInterested = false
  t.equal(u.victim([c, d], 6_000), undefined, 'peers holding a slot they were just given are not idle')
  e.idleSince = 1_000 // neither side interested since 1 s
  t.equal(u.victim([e], 6_000), e, 'a peer nobody is interested in is idle too')
  t.equal(u.victim([e], 5_000), undefined, 'after slotIdleMs')
})

t.test('optimistic rotation: no interested peer waits forever behind busy ones', async (t) => {
  const u = uploader(2)
  const peers = ['a', 'b', 'c', 'd', 'e'].map((n) => fakePeer(n))
  for (const p of peers) interested(u, p, 1_000)
  const served = new Set<string>()
  for (let now = 1_000; now <= 121_000; now += 1_000) {
    for (const p of peers) {
      if (!p.amChoking) {
        served.add(p.name)
        p.up.lastRequestAt = now // everyone unchoked is busy: no idle slot to reclaim
      }
    }
    u.tick(peers, now)
    t.ok(u.slotsUsed <= 2)
  }
  t.same([...served].sort(), ['a', 'b', 'c', 'd', 'e'], 'every peer got a slot within two minutes')
  t.equal(u.slotsUsed, 2)
})

t.test(
  'requests: served when unchoked, rejected (BEP 6) when choked, checked against the block size',
  async (t) => {
    const have = new Bitfield(4)
    have.set(0)
    have.set(1)
    const u = uploader(1, have)
    const fast = fakePeer('fast')
    const stock = fakePeer('stock', false)
    u.onRequest(fast, 0, 0, BLOCK_SIZE)
    t.same(fast.rejects, [[0, 0, BLOCK_SIZE]], 'choked: a fast peer gets a reject')
    u.onRequest(stock, 0, 0, BLOCK_SIZE)
    t.equal(stock.closed, false, 'a stock peer without BEP 6: silently dropped')

    interested(u, fast, 0)
    u.onRequest(fast, 1, BLOCK_SIZE, BLOCK_SIZE)
    await new Promise((r) => setImmediate(r))
    t.same(fast.pieces, [[1, BLOCK_SIZE, BLOCK_SIZE]], 'unchoked: served')
    u.onRequest(fast, 2, 0, BLOCK_SIZE)
    t.same(fast.rejects.at(-1), [2, 0, BLOCK_SIZE], 'a piece we lack: rejected')
    t.equal(fast.closed, false)
    u.onRequest(fast, 0, 0, 2 * BLOCK_SIZE)
    t.match(fast.closedWith, /invalid request/, 'more than the negotiated block size: closed')

    const shoal = fakePeer('shoal')
    shoal.blockSize = 2 * BLOCK_SIZE
    const u2 = uploader(1, have)
    interested(u2, shoal, 0)
    u2.onRequest(shoal, 0, 0, 2 * BLOCK_SIZE)
    await new Promise((r) => setImmediate(r))
    t.same(shoal.pieces, [[0, 0, 2 * BLOCK_SIZE]], 'the negotiated size is served to that peer')
  },
)

t.test('choking a peer rejects what it had queued; a cancel is answered with a reject', async (t) => {
  const u = uploader(1)
  const a = fakePeer('a')
  const b = fakePeer('b')
  interested(u, a, 1_000)
  a.up.serving = true // hold the queue: pretend a read is in progress
  u.onRequest(a, 0, 0, BLOCK_SIZE)
  u.onRequest(a, 0, BLOCK_SIZE, BLOCK_SIZE)
  u.onRequest(a, 1, 0, BLOCK_SIZE)
  u.onCancel(a, 0, BLOCK_SIZE, BLOCK_SIZE)
  t.same(a.rejects, [[0, BLOCK_SIZE, BLOCK_SIZE]], 'BEP 6: a cancelled queued request is rejected')
  interested(u, b, 1_000)
  a.up.serving = false
  a.up.lastRequestAt = 1_000
  u.tick([a, b], 10_000) // a asked for nothing since: idle
  t.ok(a.amChoking, 'a was choked')
  t.same(
    a.rejects.slice(1),
    [
      [0, 0, BLOCK_SIZE],
      [1, 0, BLOCK_SIZE],
    ],
    'its queued requests were rejected',
  )
  t.equal(a.up.requests.size, 0)
})

t.test(
  'egress cap: each block is paid for before it is read; one cancelled meanwhile never goes',
  async (t) => {
    const clock = new ManualClock()
    // A bucket of exactly one piece message: the first block goes at once, each next one waits.
    const limiter = new Limiter({
      direction: 'egress',
      bytesPerSec: 1 << 20,
      burstBytes: BLOCK_SIZE + 13,
      clock,
    })
    const flush = () => new Promise<void>((resolve) => setImmediate(resolve))
    const u = uploader(4)
    const a = fakePeer('a')
    a.bwOut = limiter.flow('torrent')
    interested(u, a, 1_000)
    u.onRequest(a, 0, 0, BLOCK_SIZE)
    u.onRequest(a, 0, BLOCK_SIZE, BLOCK_SIZE)
    u.onRequest(a, 0, 2 * BLOCK_SIZE, BLOCK_SIZE)
    await flush()
    t.same(a.pieces, [[0, 0, BLOCK_SIZE]], 'a full bucket pays for the first block')
    t.equal(limiter.waiting, 1, 'the second waits for bandwidth')
    clock.advance(16) // 16 KiB at 1 MiB/s
    await flush()
    t.equal(a.pieces.length, 2, 'paid for after 16 ms')
    u.onCancel(a, 0, 2 * BLOCK_SIZE, BLOCK_SIZE) // the third is waiting now
    clock.advance(100)
    await flush()
    t.equal(a.pieces.length, 2, 'a request cancelled while it waited is not sent')
    t.notOk(a.up.serving, 'and the serve loop ended')
    u.onRequest(a, 1, 0, BLOCK_SIZE)
    await flush()
    t.same(a.pieces[2], [1, 0, BLOCK_SIZE], 'the bucket refilled meanwhile')
    // Closing the flow (as Peer.close does) wakes a serve loop that waits.
    u.onRequest(a, 1, BLOCK_SIZE, BLOCK_SIZE)
    await flush()
    t.equal(limiter.waiting, 1)
    a.closed = true
    a.bwOut.close()
    await flush()
    t.notOk(a.up.serving, 'a closed peer stops waiting')
    t.equal(a.pieces.length, 3)
  },
)

t.test(
  'a capped origin sends each piece about once: a request crossing another is refused, then re-offered',
  async (t) => {
    let capped = true
    let refusals = 0
    const once = new ServeOnce(
      4,
      1_000,
      () => capped,
      () => refusals++,
    )
    const clock = new ManualClock()
    clock.advance(1_000) // the engine's time when the peers below became interested
    const u = uploader(4, Bitfield.full(4), once, 30_000, clock)
    const flush = () => new Promise<void>((resolve) => setImmediate(resolve))
    const [a, b, c] = [fakePeer('a'), fakePeer('b'), fakePeer('c', false)]
    for (const p of [a, b, c]) interested(u, p, 1_000)
    a.up.serving = true // hold a's queue: its piece 0 is queued, not sent
    u.onRequest(a, 0, 0, BLOCK_SIZE)
    u.onRequest(b, 0, 0, BLOCK_SIZE)
    t.same(b.rejects, [[0, 0, BLOCK_SIZE]], 'b asked for a piece queued for a: rejected (BEP 6)')
    u.onRequest(b, 1, 0, BLOCK_SIZE)
    u.onRequest(c, 0, 0, BLOCK_SIZE)
    await flush()
    t.same(b.pieces, [[1, 0, BLOCK_SIZE]], 'another piece is served')
    t.same(c.pieces, [[0, 0, BLOCK_SIZE]], 'a peer without BEP 6 is never refused (it could not tell)')
    t.equal(refusals, 1)
    u.onRequest(a, 0, BLOCK_SIZE, BLOCK_SIZE)
    t.same(a.rejects, [], 'the peer the piece is queued for gets its other blocks')

    u.tick([a, b, c], clock.now() + 500)
    t.same(b.haves, [], 'still within the window: not re-offered yet')
    u.tick([a, b, c], clock.now() + 1_000)
    t.same(b.haves, [0], 'once the window passed, the refused piece is offered again')
    u.tick([a, b, c], clock.now() + 2_000)
    t.same(b.haves, [0], 'once')

    // A queued request withdrawn (cancelled) frees the piece for others at once.
    u.onRequest(a, 2, 0, BLOCK_SIZE)
    u.onCancel(a, 2, 0, BLOCK_SIZE)
    u.onRequest(b, 2, 0, BLOCK_SIZE)
    await flush()
    t.same(b.pieces.at(-1), [2, 0, BLOCK_SIZE], 'a cancelled request does not hold the piece')

    // Uncapped, nothing is refused.
    capped = false
    const d = fakePeer('d')
    interested(u, d, 1_000)
    u.onRequest(d, 0, 0, BLOCK_SIZE)
    await flush()
    t.same(d.pieces, [[0, 0, BLOCK_SIZE]], 'an uncapped origin serves every request')
    t.equal(refusals, 1)
  },
)
