import t from 'tap'
import type { MetaInfo } from '../../lib/core/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { PeerDownload } from '../../lib/torrent/download/peer-download.js'
import { Scheduler } from '../../lib/torrent/download/scheduler.js'
import { Bitfield, BLOCK_SIZE, PiecePicker } from '../../lib/torrent/index.js'
import type { Peer } from '../../lib/torrent/wire/peer.js'

const PIECE = 4 * BLOCK_SIZE

/** Just enough of a MetaInfo for the scheduler: 8 pieces of 4 blocks, the last one short. */
const meta = {
  pieceCount: 8,
  pieceLength: PIECE,
  length: 7 * PIECE + 100,
  pieceSize: (i: number) => (i < 7 ? PIECE : 100),
} as unknown as MetaInfo

interface FakePeer extends Peer {
  /** The download side's record, writable here as the test plays the Downloader. */
  down: PeerDownload
  sent: Array<[number, number, number]>
  cancels: Array<[number, number, number]>
}

/** Pieces 0-6, all full-size (the short last piece has a test of its own). */
function fullPieces(): Bitfield {
  const bits = new Bitfield(8)
  for (let i = 0; i < 7; i++) bits.set(i)
  return bits
}

function fakePeer(addr: string, bits: Bitfield = fullPieces(), blockSize = BLOCK_SIZE): FakePeer {
  const sent: Array<[number, number, number]> = []
  const cancels: Array<[number, number, number]> = []
  // As the Downloader would keep it: unchoked, and interesting (the Scheduler only asks
  // whether that count is 0, so the pieces the peer has are enough whatever we have).
  const down = new PeerDownload(bits)
  down.peerChoking = false
  down.interesting = bits.count
  return {
    addr,
    cls: 'agent',
    closed: false,
    down,
    log: silentLogger(),
    amInterested: true,
    blockSize,
    reqq: 250,
    sendRequest: (i: number, o: number, l: number) => sent.push([i, o, l]),
    sendCancel: (i: number, o: number, l: number) => cancels.push([i, o, l]),
    adoptBlock: () => false,
    sent,
    cancels,
  } as unknown as FakePeer
}

/** A scheduler over 8 pieces, and `peer()`: a fake peer whose bitfield the picker already counts. */
function setup(depth: number, maxActiveBytes?: number) {
  const picker = new PiecePicker(8, { randomFirst: 0 })
  const scheduler = new Scheduler(meta, picker, { depth, maxActiveBytes })
  const peer = (addr: string, bits?: Bitfield, blockSize?: number): FakePeer => {
    const p = fakePeer(addr, bits, blockSize)
    picker.peerHas(p.down.bits!)
    return p
  }
  return { picker, scheduler, peer }
}

const block = (len = BLOCK_SIZE) => Buffer.alloc(len)

t.test('a peer fetches whole pieces (affinity) up to its pipeline depth', async (t) => {
  const { picker, scheduler, peer } = setup(8)
  const a = peer('a')
  scheduler.fill(a, 0)
  t.equal(a.sent.length, 8)
  const pieces = new Set(a.sent.map(([i]) => i))
  t.equal(pieces.size, 2, 'two whole pieces, not eight scattered blocks')
  t.equal(a.down.owned.length, 2)
  for (const p of pieces) t.ok(picker.isBusy(p))
  scheduler.fill(a, 0)
  t.equal(a.sent.length, 8, 'a full pipeline requests nothing more')
  const choked = fakePeer('c')
  choked.down.peerChoking = true
  scheduler.fill(choked, 0)
  t.equal(choked.sent.length, 0, 'nothing is requested from a peer that chokes us')
})

t.test('blocks assemble into a piece; duplicates and bad blocks are told apart', async (t) => {
  const { picker, scheduler, peer } = setup(4)
  const a = peer('a')
  scheduler.fill(a, 0)
  const [index] = a.sent[0]!
  t.same(scheduler.onBlock(a, index, 1, block(), 1), { kind: 'invalid', why: `unexpected block ${index}:1` })
  t.equal(scheduler.onBlock(a, index, 0, block(10), 1).kind, 'invalid', 'wrong length')
  t.equal(
    scheduler.onBlock(a, 7, BLOCK_SIZE, block(), 1).kind,
    'invalid',
    'past the end of the short last piece',
  )
  t.same(scheduler.onBlock(a, index, 0, block(), 1), { kind: 'accepted', piece: undefined })
  t.equal(scheduler.onBlock(a, index, 0, block(), 1).kind, 'unrequested', 'a second copy was not asked for')
  t.equal(scheduler.onBlock(a, index, BLOCK_SIZE, block(), 1).kind, 'accepted')
  t.equal(scheduler.onBlock(a, index, 2 * BLOCK_SIZE, block(), 1).kind, 'accepted')
  const done = scheduler.onBlock(a, index, 3 * BLOCK_SIZE, block(), 1)
  t.equal(done.kind, 'accepted')
  t.equal(done.kind === 'accepted' && done.piece?.index, index, 'the last block completes the piece')
  t.equal(a.down.outstanding.size, 0)
  t.equal(a.down.owned.length, 0, 'a completed piece is detached from its owner')
  t.notOk(scheduler.active.has(index))
  t.ok(picker.isBusy(index), 'stays busy until verified and written')
  scheduler.reset(index)
  t.notOk(picker.isBusy(index), 'reset makes it wanted again (failed verification)')
})

t.test(
  'a piece of one block takes the gathered block without a copy when the peer gives it up',
  async (t) => {
    const { scheduler, peer } = setup(2)
    // Blocks as large as the piece: every piece is one block.
    const a = peer('a', fullPieces(), PIECE)
    const given: Buffer[] = []
    let adopt = true
    ;(a as { adoptBlock: (b: Buffer, r: Buffer) => boolean }).adoptBlock = (_b, replacement) => {
      given.push(replacement)
      return adopt
    }
    scheduler.fill(a, 0)
    t.same(
      a.sent.map(([, o, l]) => [o, l]),
      [
        [0, PIECE],
        [0, PIECE],
      ],
    )
    const [first, second] = a.sent.map(([i]) => i)
    const before = scheduler.active.get(first!)!.data
    const data = Buffer.alloc(PIECE, 7)
    const r = scheduler.onBlock(a, first!, 0, data, 1)
    t.ok(r.kind === 'accepted' && r.piece !== undefined, 'completes the piece')
    const p = r.kind === 'accepted' ? r.piece! : undefined
    t.equal(p?.data, data, 'the block is the piece buffer')
    t.equal(given[0], before, 'and the old piece buffer went to the reader in exchange')
    adopt = false
    const copy = Buffer.alloc(PIECE, 9)
    const r2 = scheduler.onBlock(a, second!, 0, copy, 1)
    const p2 = r2.kind === 'accepted' ? r2.piece! : undefined
    t.not(p2?.data, copy, 'refused: the block is copied')
    t.ok(p2?.data.equals(copy))
  },
)

t.test('the short last piece uses a short last block', async (t) => {
  const { scheduler, peer } = setup(64)
  const bits = new Bitfield(8)
  bits.set(7)
  const a = peer('a', bits)
  scheduler.fill(a, 0)
  t.same(a.sent, [[7, 0, 100]])
})

t.test('a choking peer releases its blocks; another peer finishes its started pieces first', async (t) => {
  const { scheduler, peer } = setup(4)
  const a = peer('a')
  const b = peer('b')
  scheduler.fill(a, 0)
  const [index] = a.sent[0]!
  scheduler.onBlock(a, index, 0, block(), 1)
  scheduler.releaseAll(a, false)
  t.equal(a.down.outstanding.size, 0)
  t.equal(a.cancels.length, 0, 'no cancel after a choke')
  scheduler.fill(b, 0)
  t.same(
    b.sent.slice(0, 3).map(([i, o]) => [i, o]),
    [
      [index, BLOCK_SIZE],
      [index, 2 * BLOCK_SIZE],
      [index, 3 * BLOCK_SIZE],
    ],
    'the orphaned piece is adopted before a new one is started',
  )
  t.equal(b.down.owned[0]?.index, index)
})

t.test('timed-out requests are cancelled, re-issued elsewhere, and the slow peer is snubbed', async (t) => {
  const { scheduler, peer } = setup(4)
  const slow = peer('slow')
  const fast = peer('fast')
  scheduler.fill(slow, 1000)
  const slowPiece = slow.sent[0]![0]
  t.same(scheduler.expire([slow], 1000 + 29_999, 30_000), [], 'not yet')
  t.same(scheduler.expire([slow], 1000 + 30_000, 30_000), [slow])
  t.equal(slow.down.stalls, 1, 'a stall is counted against it')
  t.equal(slow.cancels.length, 4, 'the slow peer is told to forget them')
  t.ok(slow.down.snubbedUntil > 31_000)
  scheduler.fillAll([slow, fast], 31_000)
  t.equal(fast.sent[0]![0], slowPiece, 'the responsive peer takes the released piece')
  t.equal(slow.down.outstanding.size, 1, 'a snubbed peer gets one request at a time')
  t.not(slow.sent.at(-1)![0], slowPiece, '...and only for a new piece')
  const late = scheduler.onBlock(slow, slowPiece, 0, block(), 1)
  t.equal(late.kind, 'accepted', 'a late block is still used if the piece needs it')
  t.same(fast.cancels, [[slowPiece, 0, BLOCK_SIZE]], 'the re-issued request is cancelled')
  t.equal(
    scheduler.onBlock(fast, slowPiece, 0, block(), 1).kind,
    'unrequested',
    'and its copy, should it come anyway, is dropped',
  )
  t.equal(scheduler.onBlock(slow, slowPiece, 0, block(), 1).kind, 'unrequested', 'a late block counts once')
  const [, offset] = slow.sent[1]!
  scheduler.onReject(slow, slowPiece, offset)
  t.equal(
    scheduler.onBlock(slow, slowPiece, offset, block(), 1).kind,
    'unrequested',
    'a withdrawn request the peer rejected cannot come late any more',
  )
})

t.test('a block is only taken from the peer it was requested from', async (t) => {
  const { scheduler, peer } = setup(4)
  const honest = peer('honest')
  const hostile = peer('hostile')
  scheduler.fill(honest, 0)
  const [index] = honest.sent[0]!
  const piece = scheduler.active.get(index)!
  // The hostile peer sprays every block of the piece the honest peer is supplying.
  for (let o = 0; o < 4; o++) {
    t.same(
      scheduler.onBlock(hostile, index, o * BLOCK_SIZE, block(), 1),
      { kind: 'unrequested' },
      `block ${o} from a peer nobody asked is dropped`,
    )
  }
  t.equal(piece.received, 0, 'nothing of it entered the piece')
  t.same(piece.sources, [], 'so the hostile peer is no source of it')
  t.equal(
    scheduler.onBlock(hostile, 7, 0, block(100), 1).kind,
    'unrequested',
    'nor of a piece nobody is fetching',
  )
  for (let o = 0; o < 3; o++)
    t.equal(scheduler.onBlock(honest, index, o * BLOCK_SIZE, block(), 1).kind, 'accepted')
  t.equal(
    scheduler.onBlock(hostile, index, 3 * BLOCK_SIZE, block(), 1).kind,
    'unrequested',
    'not even the last missing block',
  )
  const done = scheduler.onBlock(honest, index, 3 * BLOCK_SIZE, block(), 1)
  t.equal(done.kind === 'accepted' && done.piece, piece, 'the honest peer completes its piece')
  t.same(piece.sources, [honest], 'and is its only source: a SHA-1 failure blames it alone')

  // Blocks freed from a peer (timeout) go to another; the first may still deliver late, a
  // third peer may not.
  scheduler.fill(honest, 0)
  const [next] = honest.sent.at(-1)!
  scheduler.releaseAll(honest, true)
  t.equal(honest.down.withdrawn.size, 4, 'the withdrawn requests are remembered')
  t.equal(scheduler.onBlock(hostile, next, 0, block(), 1).kind, 'unrequested')
  t.equal(scheduler.onBlock(honest, next, 0, block(), 1).kind, 'accepted', 'a late block from its requester')
  t.equal(honest.down.withdrawn.size, 3)
  scheduler.releaseAll(honest, false)
  t.equal(honest.down.withdrawn.size, 0, 'only the latest batch is kept (bounded by the pipeline)')
})

t.test('a reject frees the block and the piece', async (t) => {
  const { scheduler, peer } = setup(4)
  const a = peer('a')
  scheduler.fill(a, 0)
  const [index, offset] = a.sent[0]!
  scheduler.onReject(a, index, offset)
  t.equal(a.down.outstanding.size, 3)
  t.equal(a.down.owned.length, 0, 'the peer no longer owns the piece')
  const b = fakePeer('b')
  scheduler.fill(b, 0)
  t.same(b.sent[0], [index, offset, BLOCK_SIZE], 'the rejected block goes to the next peer')
})

t.test('at the end, peers share the blocks left in pieces others own', async (t) => {
  const { scheduler, peer } = setup(2)
  const bits = new Bitfield(8)
  bits.set(0)
  const a = peer('a', bits)
  const b = peer('b', bits)
  scheduler.fill(a, 0) // a owns piece 0 but only asked for 2 of its 4 blocks
  scheduler.fill(b, 0)
  t.same(
    b.sent.map(([i, o]) => [i, o]),
    [
      [0, 2 * BLOCK_SIZE],
      [0, 3 * BLOCK_SIZE],
    ],
  )
})

t.test('memory for pieces in flight is bounded', async (t) => {
  const { scheduler, peer } = setup(8, 2 * PIECE)
  const a = peer('a')
  const b = peer('b')
  scheduler.fill(a, 0)
  t.equal(a.sent.length, 8, 'two pieces fit the budget')
  scheduler.fill(b, 0)
  t.equal(b.sent.length, 0, 'no third piece is opened past the budget')
  const [index] = a.sent[0]!
  let done: ReturnType<Scheduler['onBlock']> | undefined
  for (let o = 0; o < 4; o++) done = scheduler.onBlock(a, index, o * BLOCK_SIZE, block(), 1)
  scheduler.fill(b, 0)
  t.equal(b.sent.length, 0, 'a finished piece still counts while it is hashed and written')
  if (done?.kind === 'accepted' && done.piece) scheduler.settle(done.piece, true)
  scheduler.fill(b, 0)
  t.equal(new Set(b.sent.map(([i]) => i)).size, 1, 'once written, it frees room for one more')
})

t.test(
  'endgame: the last piece from a slow peer is also requested from a fast one; the duplicate is cancelled',
  async (t) => {
    // Everything but piece 0 is already here: once the slow peer has piece 0 in flight, every
    // missing block is requested and endgame begins.
    const picker = new PiecePicker(8, { randomFirst: 0, has: (i) => i !== 0 })
    const scheduler = new Scheduler(meta, picker, { depth: 8 })
    const slow = fakePeer('slow')
    const fast = fakePeer('fast')
    picker.peerHas(slow.down.bits!)
    picker.peerHas(fast.down.bits!)
    scheduler.fill(slow, 0)
    t.same(
      slow.sent.map(([i, o]) => [i, o]),
      [0, 1, 2, 3].map((b) => [0, b * BLOCK_SIZE]),
      'the slow peer has the whole last piece',
    )
    t.ok(scheduler.endgame, 'every missing block is requested: endgame')
    scheduler.fill(fast, 0)
    t.same(fast.sent, slow.sent, 'the fast peer is asked for the same blocks')
    scheduler.fill(fast, 0)
    t.equal(fast.sent.length, 4, 'but only once each')
    const third = fakePeer('third')
    picker.peerHas(third.down.bits!)
    scheduler.fill(third, 0)
    t.equal(third.sent.length, 4, 'a third copy is allowed (endgameDuplicates = 2)')
    const fourth = fakePeer('fourth')
    picker.peerHas(fourth.down.bits!)
    scheduler.fill(fourth, 0)
    t.equal(fourth.sent.length, 0, 'a fourth is not')

    // The fast peer delivers everything: the slow one (and the third) are told to cancel.
    let done: ReturnType<Scheduler['onBlock']> | undefined
    for (let b = 0; b < 4; b++) done = scheduler.onBlock(fast, 0, b * BLOCK_SIZE, block(), 5)
    t.equal(done?.kind === 'accepted' && done.piece?.index, 0, 'the piece completes from the fast peer')
    t.same(slow.cancels, slow.sent, 'every duplicate request at the slow peer is cancelled')
    t.same(third.cancels, third.sent, 'and at the third')
    t.equal(slow.down.outstanding.size, 0)
    t.equal(third.down.outstanding.size, 0)
    t.equal(fast.cancels.length, 0, 'the sender is not told to cancel what it sent')
    t.equal(
      scheduler.onBlock(slow, 0, 0, block(), 6).kind,
      'unrequested',
      "the slow peer's late copy is dropped",
    )
    t.same(done?.kind === 'accepted' && done.piece?.sources, [fast], 'only the fast peer is a source')
  },
)

t.test('endgame: a duplicate that arrives first cancels the original request', async (t) => {
  const picker = new PiecePicker(8, { randomFirst: 0, has: (i) => i !== 0 })
  const scheduler = new Scheduler(meta, picker, { depth: 8 })
  const slow = fakePeer('slow')
  const fast = fakePeer('fast')
  picker.peerHas(slow.down.bits!)
  picker.peerHas(fast.down.bits!)
  scheduler.fill(slow, 0)
  scheduler.fill(fast, 0)
  t.equal(scheduler.onBlock(slow, 0, 0, block(), 1).kind, 'accepted')
  t.same(fast.cancels, [[0, 0, BLOCK_SIZE]], 'the duplicate of block 0 is cancelled')
  scheduler.releaseAll(fast, true) // e.g. it timed out: its other duplicates go
  t.equal(slow.down.outstanding.size, 3, 'the slow peer still holds its requests')
  scheduler.onReject(slow, 0, BLOCK_SIZE)
  const b = fakePeer('b')
  picker.peerHas(b.down.bits!)
  scheduler.fill(b, 0)
  t.same(b.sent[0], [0, BLOCK_SIZE, BLOCK_SIZE], 'a block whose every request went is free again')
})

t.test('block sizes: a piece keeps the size it was started with; smaller-block peers stay out', async (t) => {
  const picker = new PiecePicker(8, { randomFirst: 0 })
  const scheduler = new Scheduler(meta, picker, { depth: 2 })
  const shoal = fakePeer('shoal', fullPieces(), 2 * BLOCK_SIZE)
  const stock = fakePeer('stock')
  picker.peerHas(shoal.down.bits!)
  picker.peerHas(stock.down.bits!)
  scheduler.fill(shoal, 0)
  t.same(
    shoal.sent.map(([, o, l]) => [o, l]),
    [
      [0, 2 * BLOCK_SIZE],
      [2 * BLOCK_SIZE, 2 * BLOCK_SIZE],
    ],
    'two 32 KiB requests for one 64 KiB piece',
  )
  const [big] = shoal.sent[0]!
  scheduler.releaseAll(shoal, false) // orphaned: anyone able may continue it
  scheduler.fill(stock, 0)
  t.not(stock.sent[0]![0], big, 'a 16 KiB peer does not take over a 32 KiB piece')
  const [small] = stock.sent[0]!
  t.equal(
    scheduler.onBlock(stock, small, 0, block(2 * BLOCK_SIZE), 1).kind,
    'invalid',
    'a block larger than asked is a violation',
  )
  scheduler.releaseAll(stock, false)
  scheduler.fill(shoal, 0)
  t.same(
    shoal.sent.slice(2).map(([i, , l]) => [i, l]),
    [
      [big, 2 * BLOCK_SIZE],
      [big, 2 * BLOCK_SIZE],
    ],
    'the larger-block peer resumes its orphaned piece',
  )
  scheduler.onBlock(shoal, big, 0, block(2 * BLOCK_SIZE), 1)
  scheduler.onBlock(shoal, big, 2 * BLOCK_SIZE, block(2 * BLOCK_SIZE), 1)
  scheduler.fill(shoal, 0)
  t.same(
    shoal.sent.slice(4).map(([i, , l]) => [i, l]),
    [
      [small, BLOCK_SIZE],
      [small, BLOCK_SIZE],
    ],
    'and may help with a 16 KiB piece, in 16 KiB requests',
  )
})

t.test('requests are topped up in batches, not one per block', async (t) => {
  const { scheduler, peer } = setup(8)
  const a = peer('a')
  scheduler.fill(a, 0)
  const [i0, o0] = a.sent[0]!
  const [i1, o1] = a.sent[1]!
  scheduler.onBlock(a, i0, o0, block(), 1)
  scheduler.refill(a, 1)
  t.equal(a.sent.length, 8, 'one free slot: nothing sent yet')
  scheduler.onBlock(a, i1, o1, block(), 1)
  scheduler.refill(a, 1)
  t.equal(a.sent.length, 10, 'a quarter of the pipeline free: topped up at once')
})

t.test(
  'finished pieces lend their buffers to new ones, within the budget; dropSpares lets them go',
  async (t) => {
    // Budget: two whole pieces in flight or kept.
    const { scheduler, peer } = setup(4, 2 * PIECE)
    const a = peer('a')
    const finishOne = () => {
      scheduler.fill(a, 0)
      const [index] = a.sent[a.sent.length - 1]!
      let done: ReturnType<typeof scheduler.onBlock> | undefined
      for (let b = 0; b < 4; b++) done = scheduler.onBlock(a, index, b * BLOCK_SIZE, block(), 0)
      t.equal(done?.kind, 'accepted')
      const piece = (done as { piece: NonNullable<ReturnType<typeof scheduler.active.get>> }).piece
      t.ok(piece, `piece ${index} complete`)
      return piece
    }
    const first = finishOne()
    scheduler.settle(first, true)
    const second = finishOne()
    t.equal(second.data, first.data, "the next piece reuses the first one's buffer")
    scheduler.settle(second, true)
    scheduler.dropSpares()
    const third = finishOne()
    t.not(third.data, first.data, 'after dropSpares a new piece gets a fresh buffer')
  },
)
