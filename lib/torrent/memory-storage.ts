/**
 * TorrentStorage in memory, for tests and tools: the whole blob lives in one Buffer, so only
 * use it for small data. Copies on write and read so the engine can never alias its buffers.
 */
import { ShoalError } from '../errors/index.js'
import type { TorrentStorage } from './storage.js'
import { Bitfield } from './wire/bitfield.js'

export interface PieceLayout {
  length: number
  pieceLength: number
  /** MetaInfo provides it; computed from length and pieceLength otherwise. */
  readonly pieceCount?: number
}

export class MemoryStorage implements TorrentStorage {
  readonly pieceCount: number
  private readonly data: Buffer
  private readonly layout: PieceLayout
  private readonly have: Bitfield

  /** An empty store for a torrent with this layout (e.g. a MetaInfo). */
  constructor(layout: PieceLayout) {
    this.layout = { length: layout.length, pieceLength: layout.pieceLength }
    this.pieceCount = layout.pieceCount ?? Math.ceil(layout.length / layout.pieceLength)
    this.data = Buffer.alloc(layout.length)
    this.have = new Bitfield(this.pieceCount)
  }

  /** A complete store holding `data` (which must match the layout's length). */
  static complete<T extends MemoryStorage>(
    this: new (
      layout: PieceLayout,
    ) => T,
    layout: PieceLayout,
    data: Uint8Array,
  ): T {
    if (data.length !== layout.length) {
      throw new ShoalError('SIZE_MISMATCH', `data is ${data.length} bytes; the torrent has ${layout.length}`)
    }
    const s = new this(layout)
    s.data.set(data)
    for (let i = 0; i < s.pieceCount; i++) s.have.set(i)
    return s
  }

  pieceSize(i: number): number {
    return i < this.pieceCount - 1
      ? this.layout.pieceLength
      : this.layout.length - this.layout.pieceLength * (this.pieceCount - 1)
  }

  hasPiece(i: number): boolean {
    return Number.isInteger(i) && i >= 0 && i < this.pieceCount && this.have.has(i)
  }

  get piecesPresent(): number {
    return this.have.count
  }

  get complete(): boolean {
    return this.have.complete
  }

  async readBlock(piece: number, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    // The same refusals as the store's files (the TorrentStorage contract).
    if (!this.hasPiece(piece)) throw new ShoalError('INVALID_RANGE', `piece ${piece} is not present`)
    if (
      !Number.isInteger(offset) ||
      !Number.isInteger(length) ||
      offset < 0 ||
      length <= 0 ||
      offset + length > this.pieceSize(piece)
    ) {
      throw new ShoalError('INVALID_RANGE', `block ${offset}+${length} is outside piece ${piece}`)
    }
    const start = piece * this.layout.pieceLength + offset
    const src = this.data.subarray(start, start + length)
    if (into === undefined || into.length < length) return Buffer.from(src)
    into.set(src)
    return into.subarray(0, length)
  }

  async writePiece(piece: number, data: Buffer): Promise<void> {
    if (!Number.isInteger(piece) || piece < 0 || piece >= this.pieceCount)
      throw new ShoalError('INVALID_RANGE', `no piece ${piece}`)
    if (data.length !== this.pieceSize(piece)) {
      throw new ShoalError(
        'SIZE_MISMATCH',
        `piece ${piece} is ${data.length} bytes; ${this.pieceSize(piece)} expected`,
      )
    }
    if (this.have.has(piece)) return
    this.data.set(data, piece * this.layout.pieceLength)
    this.have.set(piece)
  }

  /** A copy of the bytes held (meaningful once complete). */
  toBuffer(): Buffer {
    return Buffer.from(this.data)
  }
}
