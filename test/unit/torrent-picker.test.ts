import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
import { HASH_WORKER_MIN_BYTES, verifyPiece } from '../../lib/torrent/download/hasher.js'
import {
  Bitfield,
  BLOCK_SIZE,
  classifyPeerId,
  MemoryStorage,
  PieceBuffer,
  PiecePicker,
} from '../../lib/torrent/index.js'

t.test('bitfield: wire order, counts, strict parsing', async (t) => {
  const bf = new Bitfield(10)
  t.equal(bf.buffer.length, 2)
  t.ok(bf.set(0))
  t.ok(bf.set(9))
  t.notOk(bf.set(9), 'setting twice reports no change')
  t.equal(bf.count, 2)
  t.same([...bf.buffer], [0x80, 0x40], 'bit 7 of byte 0 is piece 0')
  t.ok(bf.clear(0))
  t.notOk(bf.clear(0))
  t.equal(bf.count, 1)

  const parsed = Bitfield.fromWire(10, Uint8Array.from([0xff, 0xc0]))
  t.ok(parsed)
  t.equal(parsed!.count, 10)
  t.ok(parsed!.complete)
  t.equal(Bitfield.fromWire(10, Uint8Array.from([0xff])), undefined, 'wrong length is rejected')
  t.equal(Bitfield.fromWire(10, Uint8Array.from([0xff, 0xe0])), undefined, 'a spare bit set is rejected')
  t.equal(
    Bitfield.fromWire(16, Uint8Array.from([0xff, 0xff]))!.count,
    16,
    'no spare bits when length is a multiple of 8',
  )
  t.ok(Bitfield.full(13).complete)
  t.equal(Bitfield.full(13).buffer[1], 0xf8)

  const theirs = Bitfield.fromWire(10, Uint8Array.from([0b1010_0000, 0b1100_0000]))! // 0, 2, 8, 9
  const ours = Bitfield.fromWire(10, Uint8Array.from([0b1000_0001, 0b0100_0000]))! // 0, 7, 9
  t.equal(theirs.countNotIn(ours), 2, 'pieces they have that we lack: 2 and 8')
  t.equal(Bitfield.full(10).countNotIn(new Bitfield(10)), 10)
  t.equal(ours.countNotIn(Bitfield.full(10)), 0)
})

t.test('picker: availability follows bitfields and haves', async (t) => {
  const p = new PiecePicker(12)
  const a = Bitfield.fromWire(12, Uint8Array.from([0b1100_0000, 0b0001_0000]))!
  const b = Bitfield.full(12)
  p.peerHas(a)
  p.peerHas(b)
  t.same(Array.from(p.availability), [2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2])
  p.peerHasPiece(5)
  t.equal(p.availability[5], 2)
  p.peerLost(b)
  t.same(Array.from(p.availability), [1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1])
  p.peerLostPiece(5) // a peer rejected it while unchoking us: it will not serve it
  t.equal(p.availability[5], 0)
})

t.test('picker: rarest first, skipping pieces we have or are fetching', async (t) => {
  const n = 64
  const p = new PiecePicker(n, { randomFirst: 0 })
  const seedA = Bitfield.full(n)
  const seedB = Bitfield.full(n)
  const partial = new Bitfield(n)
  for (let i = 0; i < n; i++) if (i !== 17 && i !== 40) partial.set(i)
  p.peerHas(seedA)
  p.peerHas(seedB)
  p.peerHas(partial)
  // 17 and 40 have availability 2, every other piece 3.
  for (let k = 0; k < 20; k++) t.ok([17, 40].includes(p.pick(seedA)), 'a rarest piece is chosen')
  p.setBusy(17, true)
  t.equal(p.pick(seedA), 40, 'a busy piece is not picked twice')
  p.markHave(40)
  const next = p.pick(seedA)
  t.not(next, 17)
  t.not(next, 40)
  t.ok(next >= 0)
  t.equal(p.pick(new Bitfield(n)), -1, 'nothing wanted from a peer without pieces')
  t.equal(p.pick(partial) === 17 || p.pick(partial) === 40, false, 'never a piece the peer lacks')
})

t.test('picker: first pieces are random, not always the rarest', async (t) => {
  const n = 100
  const p = new PiecePicker(n, { randomFirst: 4 })
  const seed = Bitfield.full(n)
  p.peerHas(seed)
  const other = Bitfield.full(n)
  other.clear(0)
  p.peerHas(other) // piece 0 is the unique rarest
  const picks = new Set<number>()
  for (let k = 0; k < 50; k++) picks.add(p.pick(seed))
  t.ok(picks.size > 5, `random picks spread out (${picks.size} distinct)`)
  for (let i = 1; i <= 4; i++) p.markHave(i)
  t.equal(p.pick(seed), 0, 'rarest first once a few pieces are in')
})

t.test('picker: starts from what storage already has', async (t) => {
  const p = new PiecePicker(5, { has: (i) => i % 2 === 0 })
  t.equal(p.have.count, 3)
  t.notOk(p.wanted(0))
  t.ok(p.wanted(1))
  p.markHave(1)
  p.markHave(3)
  t.ok(p.complete)
})

t.test('piece buffer: assembly, release, duplicates, verification, credit', async (t) => {
  const size = BLOCK_SIZE * 2 + 100
  const data = randomBytes(size)
  const sha1 = createHash('sha1').update(data).digest()
  const piece = new PieceBuffer<string>(7, size)
  t.equal(piece.blockCount, 3)
  t.equal(piece.blockLength(2), 100)
  t.equal(piece.nextFreeBlock(), 0)
  piece.markRequested(0, 'A')
  piece.markRequested(1, 'A')
  t.equal(piece.nextFreeBlock(), 2)
  piece.markRequested(2, 'A')
  t.equal(piece.nextFreeBlock(), -1)
  t.notOk(piece.release(1, 'B'), 'only the requester can release a block')
  t.ok(piece.release(1, 'A'))
  t.equal(piece.nextFreeBlock(), 1, 'a released block is free again')
  piece.markRequested(1, 'B')

  t.ok(piece.accept(0, data.subarray(0, BLOCK_SIZE), 'A', 'origin'))
  t.ok(piece.accept(2, data.subarray(2 * BLOCK_SIZE), 'A', 'origin'))
  t.notOk(piece.accept(2, data.subarray(2 * BLOCK_SIZE), 'A', 'origin'), 'a duplicate is dropped')
  t.notOk(piece.complete)
  t.ok(piece.accept(1, data.subarray(BLOCK_SIZE, 2 * BLOCK_SIZE), 'B', 'agent'))
  t.ok(piece.complete)
  t.ok(piece.verify(sha1))
  t.same(piece.sources, ['A', 'B'])
  t.equal(piece.originBytes, BLOCK_SIZE + 100)
  t.equal(piece.agentBytes, BLOCK_SIZE)
  t.equal(piece.originBytes + piece.agentBytes, size, 'credit is exact')
  t.equal(piece.majorityClass, 'origin')

  const bad = new PieceBuffer<string>(0, BLOCK_SIZE)
  const wrong = Buffer.from(data.subarray(0, BLOCK_SIZE))
  wrong[5]! ^= 1
  bad.accept(0, wrong, 'X', 'agent')
  t.notOk(bad.verify(createHash('sha1').update(data.subarray(0, BLOCK_SIZE)).digest()))
})

t.test('picker: counts pieces nobody fetches yet (endgame starts at zero)', async (t) => {
  const p = new PiecePicker(6, { has: (i) => i === 0 })
  t.equal(p.startable, 5)
  p.setBusy(1, true)
  p.setBusy(1, true) // idempotent
  p.setBusy(2, true)
  t.equal(p.startable, 3)
  p.setBusy(2, false) // a failed piece is wanted again
  t.equal(p.startable, 4)
  t.ok(p.markHave(1), 'a busy piece verified')
  t.equal(p.startable, 4, 'was already not startable')
  t.ok(p.markHave(3), 'a piece stored without being busy (e.g. resumed)')
  t.equal(p.startable, 3)
  t.notOk(p.markHave(3))
  for (const i of [2, 4, 5]) p.setBusy(i, true)
  t.equal(p.startable, 0, 'every missing piece is in flight')
})

t.test('piece buffer: larger blocks, and several requests per block in endgame', async (t) => {
  const size = 5 * BLOCK_SIZE
  const piece = new PieceBuffer<string>(3, size, 2 * BLOCK_SIZE)
  t.equal(piece.blockCount, 3, 'two 32 KiB blocks and a short one')
  t.equal(piece.blockLength(0), 2 * BLOCK_SIZE)
  t.equal(piece.blockLength(2), BLOCK_SIZE)
  piece.markRequested(0, 'slow')
  piece.addRequest(0) // endgame: also asked from 'fast'
  t.equal(piece.requests(0), 2)
  t.ok(piece.release(0, 'fast'), 'a duplicate holder may withdraw its request')
  t.ok(piece.isRequested(0), 'the block is still requested from the first peer')
  t.equal(piece.requesterOf(0), 'slow')
  piece.addRequest(0)
  t.ok(piece.release(0, 'slow'), 'the first requester withdraws')
  t.ok(piece.isRequested(0), 'the duplicate keeps it requested')
  t.equal(piece.requesterOf(0), undefined)
  t.ok(piece.release(0, 'fast'))
  t.notOk(piece.isRequested(0), 'free once every request is gone')
  t.equal(piece.nextFreeBlock(), 0)

  const data = randomBytes(size)
  piece.markRequested(0, 'a')
  piece.addRequest(0)
  t.ok(piece.accept(0, data.subarray(0, 2 * BLOCK_SIZE), 'b', 'agent'))
  t.equal(piece.requests(0), 0, 'a received block has no requests left')
  t.notOk(piece.release(0, 'a'), 'nothing to release once received')
  t.ok(piece.accept(1, data.subarray(2 * BLOCK_SIZE, 4 * BLOCK_SIZE), 'b', 'agent'))
  t.ok(piece.accept(2, data.subarray(4 * BLOCK_SIZE), 'b', 'agent'))
  t.ok(piece.verify(createHash('sha1').update(data).digest()))

  const recycled = Buffer.alloc(size, 7)
  const again = new PieceBuffer<string>(3, size, BLOCK_SIZE, recycled)
  t.equal(again.data, recycled, 'a recycled buffer of the right size is used')
  t.not(new PieceBuffer<string>(3, size - 1, BLOCK_SIZE, recycled).data, recycled, 'not one of another size')
})

t.test('peer class comes from the peer-id prefix', async (t) => {
  t.equal(classifyPeerId(Buffer.from('-SO0001-abcdefghijkl')), 'origin')
  t.equal(classifyPeerId(Buffer.from('-SA0001-abcdefghijkl')), 'agent')
  t.equal(classifyPeerId(Buffer.from('-aria2-0000000000000')), 'agent')
})

t.test('memory storage', async (t) => {
  const layout = { length: 100_000, pieceLength: 32_768 }
  const data = randomBytes(layout.length)
  const full = MemoryStorage.complete(layout, data)
  t.equal(full.pieceCount, 4)
  t.ok(full.complete)
  t.same(await full.readBlock(3, 0, 100_000 - 3 * 32_768), data.subarray(3 * 32_768))
  await t.rejects(full.readBlock(3, 1, 100_000 - 3 * 32_768), { code: 'INVALID_RANGE' })
  const empty = new MemoryStorage(layout)
  t.notOk(empty.hasPiece(0))
  await t.rejects(empty.readBlock(0, 0, 10), { code: 'INVALID_RANGE' })
  await t.rejects(empty.writePiece(0, Buffer.alloc(10)), { code: 'SIZE_MISMATCH' })
  for (let i = 0; i < 4; i++)
    await empty.writePiece(i, data.subarray(i * 32_768, Math.min(layout.length, (i + 1) * 32_768)))
  t.ok(empty.complete)
  t.same(empty.toBuffer(), data)
})

t.test(
  'piece verification: large pieces on the hash worker, small ones inline, memory handed back',
  async (t) => {
    const verify = (data: Buffer, expected: Buffer) =>
      new Promise<[Buffer, string]>((resolve) => verifyPiece(data, expected, true, (d, v) => resolve([d, v])))
    for (const size of [HASH_WORKER_MIN_BYTES * 4, 16 << 10]) {
      const original = randomBytes(size)
      const piece = Buffer.allocUnsafe(size)
      original.copy(piece)
      const sha1 = createHash('sha1').update(original).digest()
      const [back, verdict] = await verify(piece, sha1)
      t.equal(verdict, 'ok', `${size} bytes: a good piece passes`)
      t.ok(back.equals(original), `${size} bytes: the same bytes come back`)
      back[0]! ^= 1
      const [, bad] = await verify(back, sha1)
      t.equal(bad, 'bad', `${size} bytes: a flipped bit fails`)
    }
  },
)
