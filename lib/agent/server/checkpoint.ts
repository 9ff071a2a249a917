/**
 * What makes a resumed download lose little, whatever the speed:
 *
 * - CheckpointedStorage is the storage the engine downloads into: the store's PieceFile, plus a
 *   bitfield checkpoint every 1/64 of the blob (the store's own is on a ~1 s timer) and an entry
 *   in the journal's piece log as each piece is written.
 * - recoverPieces() runs when a download is reopened: the pieces the piece log names but the
 *   bitfield does not (written after the last checkpoint that reached the disk) are read back
 *   and kept when their SHA-1 matches the metainfo, as if a peer had sent them again.
 *
 * The bitfield only claims pieces whose bytes were fdatasync'ed, so a checkpoint can take as
 * long as the disk needs to flush what the network delivered; after a SIGKILL the page cache
 * still holds those bytes, and the piece log says which they are. After a power cut the bytes
 * may be lost or torn: the SHA-1 check is what makes keeping them safe.
 */
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import type { MetaInfo } from '../../core/index.js'
import { errnoCode, type ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { ioError, readFully } from '../../store/fsutil.js'
import type { PieceFile } from '../../store/index.js'
import type { TorrentStorage } from '../../torrent/index.js'
import type { PieceLog } from './journal.js'

/** Checkpoints per blob: each costs one fdatasync and one small atomic file write. */
export const CHECKPOINTS_PER_BLOB = 64

export class CheckpointedStorage implements TorrentStorage {
  readonly pieceCount: number
  private readonly every: number
  private sinceCheckpoint = 0

  constructor(
    private readonly file: PieceFile,
    private readonly pieceLog: PieceLog | undefined,
    private readonly log: Logger,
  ) {
    this.pieceCount = file.pieceCount
    this.every = Math.max(1, Math.ceil(file.pieceCount / CHECKPOINTS_PER_BLOB))
  }

  hasPiece(i: number): boolean {
    return this.file.hasPiece(i)
  }

  readBlock(piece: number, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return this.file.readBlock(piece, offset, length, into)
  }

  /**
   * Why the data stopped being writable (a full disk: INSUFFICIENT_STORAGE naming the file), kept
   * because the engine reports a storage failure in its own words; the download reports this one.
   */
  failure: ShoalError | undefined

  async writePiece(piece: number, data: Buffer): Promise<void> {
    try {
      await this.file.writePiece(piece, data)
    } catch (err) {
      const e = ioError(err, `cannot write piece ${piece} of ${this.file.digest}`, this.file.dataPath)
      // A write refused because the download was closed under it is not the cause of anything.
      if (!this.file.closed) this.failure ??= e
      throw e
    }
    // After the data write: a piece the log names has its bytes in the page cache at least.
    if (this.pieceLog) await this.pieceLog.append(piece).catch(this.onLogError)
    if (++this.sinceCheckpoint < this.every) return
    this.sinceCheckpoint = 0
    // Not awaited: the engine goes on with the next piece while the bitfield is made durable
    // (PieceFile serialises flushes and only claims pieces whose bytes were synced).
    this.file.flush().catch(this.onFlushError)
  }

  private readonly onFlushError = (err: unknown): void => {
    this.log.warn({ err, digest: this.file.digest.toString() }, 'cannot checkpoint the download bitfield')
  }

  private readonly onLogError = (err: unknown): void => {
    this.log.warn({ err, digest: this.file.digest.toString() }, 'cannot append to the piece log')
  }
}

/**
 * Reads each candidate piece the bitfield does not claim from `dataPath` (the download's data
 * file), and hands those whose SHA-1 matches to the PieceFile, which claims them. Returns how
 * many were kept. Failures only cost the pieces: they are downloaded again.
 */
export async function recoverPieces(
  file: PieceFile,
  meta: MetaInfo,
  dataPath: string,
  candidates: readonly number[],
  log: Logger,
): Promise<number> {
  const missing = candidates.filter((i) => !file.hasPiece(i))
  if (missing.length === 0) return 0
  let kept = 0
  let fh: Awaited<ReturnType<typeof open>> | undefined
  try {
    fh = await open(dataPath, 'r')
    const buf = Buffer.allocUnsafe(meta.pieceLength)
    for (const i of missing) {
      const size = meta.pieceSize(i)
      await readFully(fh, buf, i * meta.pieceLength, size)
      const piece = buf.subarray(0, size)
      if (!createHash('sha1').update(piece).digest().equals(meta.pieceHash(i))) continue
      // writePiece copies nothing it keeps; the buffer is reused for the next piece.
      await file.writePiece(i, piece)
      kept++
    }
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT')
      log.warn(
        { digest: file.digest.toString(), err: toShoalError(err).message },
        'cannot recheck pieces written before the restart',
      )
  } finally {
    await fh?.close().catch(() => undefined)
  }
  if (kept > 0) await file.flush().catch(() => undefined)
  return kept
}
