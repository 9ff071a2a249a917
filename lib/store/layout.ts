/** Piece layout of a blob (as in its metainfo) and the checks on it. */
import { ShoalError } from '../errors/index.js'

export interface BlobLayout {
  length: number
  pieceLength: number
  pieceCount: number
}

/**
 * A layout with the SHA-1 of each piece (a MetaInfo is one): a download opened with it recovers
 * the pieces its piece log names beyond the bitfield (piece-log.ts).
 */
export interface VerifiableLayout extends BlobLayout {
  pieceHash(i: number): Uint8Array
}

export function checkLayout(layout: BlobLayout): void {
  const { length, pieceLength, pieceCount } = layout
  const ok =
    Number.isSafeInteger(length) &&
    length >= 0 &&
    Number.isSafeInteger(pieceLength) &&
    pieceLength > 0 &&
    Number.isSafeInteger(pieceCount) &&
    (pieceCount === Math.ceil(length / pieceLength) || (length === 0 && pieceCount === 1))
  if (!ok) {
    throw new ShoalError(
      'BAD_METAINFO',
      `inconsistent piece layout: length ${length}, piece length ${pieceLength}, ${pieceCount} pieces`,
    )
  }
}

export function pieceSize(layout: BlobLayout, i: number): number {
  return i < layout.pieceCount - 1
    ? layout.pieceLength
    : layout.length - layout.pieceLength * (layout.pieceCount - 1)
}

export function checkBlock(
  layout: BlobLayout,
  piece: number,
  offset: number,
  length: number,
  what: string,
): void {
  if (!Number.isInteger(piece) || piece < 0 || piece >= layout.pieceCount) {
    throw new ShoalError('INVALID_RANGE', `${what}: piece ${piece} outside 0..${layout.pieceCount - 1}`)
  }
  const size = pieceSize(layout, piece)
  if (
    !Number.isInteger(offset) ||
    !Number.isInteger(length) ||
    offset < 0 ||
    length <= 0 ||
    offset + length > size
  ) {
    throw new ShoalError(
      'INVALID_RANGE',
      `${what}: block ${offset}+${length} outside piece ${piece} of ${size} bytes`,
    )
  }
}
