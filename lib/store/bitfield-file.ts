/**
 * `downloads/<hex>.bitfield`: the pieces of a download whose bytes are durably on disk, with the
 * layout they belong to, so a reopen with another layout starts over instead of trusting it.
 */
import { open } from 'node:fs/promises'
import { atomicWriteFile } from './fsutil.js'
import type { BlobLayout } from './layout.js'

interface BitfieldFile {
  v: 1
  length: number
  pieceLength: number
  pieceCount: number
  bits: string
}

/** Writes `bits` for `layout` atomically (a crash leaves the old file or the new one). */
export async function saveBitfield(
  tmpDir: string,
  path: string,
  layout: BlobLayout,
  bits: Uint8Array,
): Promise<void> {
  const { length, pieceLength, pieceCount } = layout
  const body: BitfieldFile = {
    v: 1,
    length,
    pieceLength,
    pieceCount,
    bits: Buffer.from(bits).toString('base64'),
  }
  await atomicWriteFile(tmpDir, path, Buffer.from(JSON.stringify(body)))
}

/** The persisted bits when the file exists and describes the same layout; otherwise undefined. */
export async function loadBitfield(path: string, layout: BlobLayout): Promise<Uint8Array | undefined> {
  let parsed: Partial<BitfieldFile>
  try {
    const fh = await open(path, 'r')
    try {
      parsed = JSON.parse((await fh.readFile()).toString('utf8')) as Partial<BitfieldFile>
    } finally {
      await fh.close()
    }
  } catch {
    return undefined
  }
  if (
    parsed.v !== 1 ||
    parsed.length !== layout.length ||
    parsed.pieceLength !== layout.pieceLength ||
    parsed.pieceCount !== layout.pieceCount
  ) {
    return undefined
  }
  const bits = Buffer.from(String(parsed.bits ?? ''), 'base64')
  if (bits.length !== Math.ceil(layout.pieceCount / 8)) return undefined
  const spare = bits.length * 8 - layout.pieceCount
  if (spare > 0 && ((bits[bits.length - 1] as number) & ((1 << spare) - 1)) !== 0) return undefined
  return new Uint8Array(bits)
}
