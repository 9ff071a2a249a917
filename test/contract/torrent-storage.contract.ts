/**
 * The contract every TorrentStorage implementation must pass (lib/torrent/storage.ts): the
 * engine's MemoryStorage, the store's downloads (PieceFile: fresh, resumed, recovered) and its
 * seeds (SeedFile). Run it from a *.test.ts file: `torrentStorageContract(t, impl)`.
 *
 * What an implementation supports is stated, not guessed: a read-only one (a seed) holds every
 * piece from the start and refuses every write with BAD_REQUEST; a persistent one keeps the
 * pieces written across close and reopen. Cases that do not apply are skipped, saying why.
 */
import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import { isShoalError } from '../../lib/errors/index.js'
import type { TorrentStorage } from '../../lib/torrent/index.js'

export interface StorageLayout {
  length: number
  pieceLength: number
  pieceCount: number
}

export interface StorageFixture {
  storage: TorrentStorage
  /** Closes `storage` and opens the same storage again; persistent implementations only. */
  reopen?(): Promise<TorrentStorage>
  /** Closes whatever is open (reopened storage included) and removes its files. */
  cleanup(): Promise<void>
}

export interface StorageImpl {
  name: string
  /** Holds every piece from the start and refuses every write (a seed of a cached blob). */
  readOnly: boolean
  /** Pieces written survive close and reopen (a bitfield on disk). */
  persistent: boolean
  /**
   * Storage for `data` laid out as `layout`, holding the pieces `have` (written the way the
   * implementation gets them: through writePiece, or a crash and a resume); a read-only one
   * holds every piece whatever `have` says.
   */
  open(layout: StorageLayout, data: Buffer, have: readonly number[]): Promise<StorageFixture>
}

/** Four pieces of 16 KiB, the last one short (1000 bytes): the edges the engine meets. */
const PIECE = 16 << 10
const LAST = 1000
export const LAYOUT: StorageLayout = { length: 3 * PIECE + LAST, pieceLength: PIECE, pieceCount: 4 }

/** Piece i of `data` under LAYOUT, as a copy (the engine's buffers are its own). */
function piece(data: Buffer, i: number): Buffer {
  return Buffer.from(data.subarray(i * PIECE, Math.min(LAYOUT.length, (i + 1) * PIECE)))
}

async function rejectsCode(t: Test, p: Promise<unknown>, code: string, msg: string): Promise<unknown> {
  try {
    await p
    t.fail(`${msg}: expected ${code}, resolved`)
    return undefined
  } catch (err) {
    t.ok(isShoalError(err), `${msg}: a ShoalError`)
    t.equal((err as { code?: string }).code, code, msg)
    return err
  }
}

export function torrentStorageContract(t: Test, impl: StorageImpl): void {
  const all = [0, 1, 2, 3]
  const withStorage = (
    title: string,
    have: readonly number[],
    opts: { skip?: string | false },
    fn: (t: Test, fx: StorageFixture, data: Buffer) => Promise<void>,
  ) =>
    t.test(`${impl.name}: ${title}`, { skip: opts.skip || false }, async (t) => {
      const data = randomBytes(LAYOUT.length)
      const fx = await impl.open(LAYOUT, data, have)
      t.teardown(() => fx.cleanup())
      await fn(t, fx, data)
    })
  const held = (have: readonly number[], i: number) => impl.readOnly || have.includes(i)
  const writable = impl.readOnly && 'a read-only seed refuses writes (see its own case)'

  withStorage('pieceCount and hasPiece: the layout and the pieces held', [0, 2], {}, async (t, fx) => {
    const s = fx.storage
    t.equal(s.pieceCount, LAYOUT.pieceCount)
    t.same(
      all.map((i) => s.hasPiece(i)),
      all.map((i) => held([0, 2], i)),
      impl.readOnly ? 'every piece' : 'pieces 0 and 2 only',
    )
    for (const i of [-1, LAYOUT.pieceCount, 1.5, Number.NaN])
      t.equal(s.hasPiece(i), false, `hasPiece(${i}): not a piece index`)
  })

  withStorage(
    'writePiece: present after, readable, no reference kept, idempotent',
    [0],
    { skip: writable },
    async (t, fx, data) => {
      const s = fx.storage
      t.notOk(s.hasPiece(1), 'absent before')
      const buf = piece(data, 1)
      await s.writePiece(1, buf)
      t.ok(s.hasPiece(1), 'present after')
      // The engine reuses its buffer once the write settled.
      buf.fill(0)
      t.same(await s.readBlock(1, 0, PIECE), piece(data, 1), 'the bytes written, not the reused buffer')
      await s.writePiece(3, piece(data, 3))
      t.ok(s.hasPiece(3), 'the short last piece, at its own size')
      t.same(await s.readBlock(3, 0, LAST), piece(data, 3))
      await s.writePiece(1, piece(data, 1))
      t.ok(s.hasPiece(1), 'writing a present piece again is harmless')
      t.same(await s.readBlock(1, 0, PIECE), piece(data, 1))
      t.same(
        all.map((i) => s.hasPiece(i)),
        [true, true, false, true],
        'the other pieces are untouched',
      )
    },
  )

  withStorage('writePiece refuses what is not a piece', [], { skip: writable }, async (t, fx, data) => {
    const s = fx.storage
    await rejectsCode(t, s.writePiece(4, piece(data, 0)), 'INVALID_RANGE', 'a piece past the end')
    await rejectsCode(t, s.writePiece(-1, piece(data, 0)), 'INVALID_RANGE', 'a negative index')
    await rejectsCode(t, s.writePiece(0.5, piece(data, 0)), 'INVALID_RANGE', 'a fractional index')
    await rejectsCode(t, s.writePiece(0, Buffer.alloc(10)), 'SIZE_MISMATCH', 'a piece too short')
    await rejectsCode(
      t,
      s.writePiece(3, Buffer.alloc(PIECE)),
      'SIZE_MISMATCH',
      'a full-size piece where the last one is short',
    )
    t.same(
      all.map((i) => s.hasPiece(i)),
      [false, false, false, false],
      'refused writes claim nothing',
    )
  })

  withStorage(
    'read-only: every piece held, writes refused clearly, bytes unchanged',
    [],
    { skip: !impl.readOnly && 'writable' },
    async (t, fx, data) => {
      const s = fx.storage
      t.ok(
        all.every((i) => s.hasPiece(i)),
        'every piece, without a write',
      )
      const err = await rejectsCode(t, s.writePiece(0, Buffer.alloc(PIECE)), 'BAD_REQUEST', 'a write')
      t.match((err as Error | undefined)?.message, /read-only/, 'the message says why')
      t.same(await s.readBlock(0, 0, PIECE), piece(data, 0), 'the piece is as it was')
    },
  )

  withStorage(
    'readBlock: blocks inside a piece, the short last piece included',
    all,
    {},
    async (t, fx, data) => {
      const s = fx.storage
      t.same(await s.readBlock(0, 0, PIECE), piece(data, 0), 'a whole piece')
      t.same(await s.readBlock(1, 100, 1000), piece(data, 1).subarray(100, 1100), 'a block inside a piece')
      t.same(await s.readBlock(2, PIECE - 1, 1), piece(data, 2).subarray(PIECE - 1), "a piece's last byte")
      t.same(await s.readBlock(3, 0, LAST), piece(data, 3), 'the short last piece, whole')
      t.same(await s.readBlock(3, LAST - 1, 1), piece(data, 3).subarray(LAST - 1), "the blob's last byte")
    },
  )

  withStorage(
    'readBlock refuses blocks outside their piece, and absent pieces',
    [0, 3],
    {},
    async (t, fx) => {
      const s = fx.storage
      const refused: Array<[number, number, number, string]> = [
        [0, PIECE - 10, 11, 'a block running past its piece'],
        [0, PIECE, 1, "a block starting at its piece's end"],
        [3, 0, LAST + 1, 'a block longer than the short last piece'],
        [3, LAST, 1, 'a block starting at the end of the short last piece'],
        [0, -1, 10, 'a negative offset'],
        [0, 0, 0, 'an empty block'],
        [0, 0.5, 10, 'a fractional offset'],
        [4, 0, 1, 'a piece past the end'],
        [-1, 0, 1, 'a negative piece'],
      ]
      for (const [p, offset, length, what] of refused)
        await rejectsCode(t, s.readBlock(p, offset, length), 'INVALID_RANGE', what)
      if (impl.readOnly) return
      t.notOk(s.hasPiece(1))
      await rejectsCode(t, s.readBlock(1, 0, 10), 'INVALID_RANGE', 'a piece not held')
    },
  )

  withStorage(
    "readBlock's `into`: read into it and a view returned, a small one left alone",
    all,
    {},
    async (t, fx, data) => {
      const s = fx.storage
      const want = piece(data, 1).subarray(10, 510)
      const into = Buffer.alloc(PIECE + 50, 0xee)
      const got = await s.readBlock(1, 10, 500, into)
      t.same(got, want, 'the bytes')
      t.equal(got.length, 500, 'a view of `length` bytes')
      t.ok(got.buffer === into.buffer && got.byteOffset === into.byteOffset, 'at the start of `into`')
      t.ok(
        into.subarray(500).every((b) => b === 0xee),
        'nothing written past `length`',
      )
      const exact = Buffer.alloc(500)
      const same = await s.readBlock(1, 10, 500, exact)
      t.ok(same.buffer === exact.buffer && same.length === 500, 'an `into` of exactly `length` bytes serves')
      t.same(exact, want)
      const small = Buffer.alloc(100, 0xee)
      const fresh = await s.readBlock(1, 10, 500, small)
      t.same(fresh, want, 'a smaller `into`: the bytes all the same')
      t.not(fresh.buffer, small.buffer, 'in a buffer of their own')
      t.ok(
        small.every((b) => b === 0xee),
        'and the small `into` untouched',
      )
      // What a read returns is the caller's: changing it changes nothing held.
      const mine = await s.readBlock(0, 0, 100)
      mine.fill(0)
      t.same(await s.readBlock(0, 0, 100), piece(data, 0).subarray(0, 100), 'a returned block is a copy')
    },
  )

  withStorage(
    'pieces written survive close and reopen',
    [1],
    {
      skip:
        !impl.persistent &&
        (impl.readOnly ? 'a read-only seed is complete on every open' : 'keeps its pieces in memory only'),
    },
    async (t, fx, data) => {
      await fx.storage.writePiece(3, piece(data, 3))
      const again = await fx.reopen?.()
      if (!again) {
        t.fail('a persistent implementation can reopen')
        return
      }
      t.not(again, fx.storage, 'a new object')
      t.equal(again.pieceCount, LAYOUT.pieceCount)
      t.same(
        all.map((i) => again.hasPiece(i)),
        [false, true, false, true],
        'the pieces held before, and only those',
      )
      t.same(await again.readBlock(1, 0, PIECE), piece(data, 1), 'their bytes')
      t.same(await again.readBlock(3, 0, LAST), piece(data, 3))
      await again.writePiece(0, piece(data, 0))
      t.ok(again.hasPiece(0), 'and it takes further pieces')
    },
  )
}
