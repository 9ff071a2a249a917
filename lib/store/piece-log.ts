/**
 * What makes a resumed download lose little, whatever the speed: `downloads/<hex>.pieces`, the
 * indexes of the pieces written, 4 bytes each, appended (never synced) as each piece is written.
 *
 * The bitfield only claims pieces whose bytes were fdatasync'ed, so it lags the download by as
 * long as the disk needs to flush what the network delivered (easily a second at full speed).
 * After a SIGKILL the page cache still holds those bytes, and the log says which they are: a
 * reopened download reads them back and keeps those whose SHA-1 matches the metainfo, as if a
 * peer had sent them again (recoverPieces). After a power cut the bytes may be lost or torn: the
 * SHA-1 check is what makes keeping them safe.
 */
import { createHash } from 'node:crypto'
import { type FileHandle, open, readFile } from 'node:fs/promises'
import { errnoCode, ShoalError } from '../errors/index.js'
import { readFully } from './fsutil.js'
import { pieceSize, type VerifiableLayout } from './layout.js'

/** Appends piece indexes; never synced: it only has to outlive the process (see above). */
export class PieceLog {
  private constructor(private readonly fh: FileHandle) {}

  /** The log at `path`, for appending; created when absent. */
  static async open(path: string): Promise<PieceLog> {
    try {
      return new PieceLog(await open(path, 'a'))
    } catch (err) {
      throw new ShoalError('IO_ERROR', `cannot open the piece log ${path}`, { cause: err })
    }
  }

  /** One 4-byte write per piece (pieces are 256 KiB to 16 MiB: not a per-block cost). */
  async append(piece: number): Promise<void> {
    const entry = Buffer.allocUnsafe(4)
    entry.writeUInt32BE(piece, 0)
    await this.fh.write(entry)
  }

  close(): Promise<void> {
    return this.fh.close().catch(() => undefined)
  }
}

/** The pieces the log at `path` names (each once, in order), below `pieceCount`; none without a log. */
export async function readPieceLog(path: string, pieceCount: number): Promise<number[]> {
  let raw: Buffer
  try {
    raw = await readFile(path)
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return []
    throw new ShoalError('IO_ERROR', `cannot read the piece log ${path}`, { cause: err })
  }
  const seen = new Set<number>()
  // A torn last entry (a crash mid-append) is ignored.
  for (let off = 0; off + 4 <= raw.length; off += 4) {
    const i = raw.readUInt32BE(off)
    if (i < pieceCount) seen.add(i)
  }
  return [...seen].sort((a, b) => a - b)
}

/**
 * Reads each candidate piece from the data file and returns those whose SHA-1 matches the
 * layout's: the caller claims them. Reading stops at the first I/O failure (what was found so
 * far is kept): it only costs pieces, which are downloaded again.
 */
export async function recoverPieces(
  fh: FileHandle,
  layout: VerifiableLayout,
  candidates: readonly number[],
): Promise<{ kept: number[]; error?: unknown }> {
  const kept: number[] = []
  const buf = Buffer.allocUnsafe(layout.pieceLength)
  try {
    for (const i of candidates) {
      const piece = buf.subarray(0, pieceSize(layout, i))
      await readFully(fh, piece, i * layout.pieceLength)
      const sha1 = createHash('sha1').update(piece).digest()
      if (sha1.equals(layout.pieceHash(i))) kept.push(i)
    }
  } catch (error) {
    return { kept, error }
  }
  return { kept }
}
