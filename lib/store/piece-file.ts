/**
 * A download in progress (`downloads/<hex>`, `.bitfield`, `.pieces`), as the BitTorrent engine's
 * TorrentStorage. Data is written first and the bitfield persisted only after an fdatasync, so a
 * crash can lose pieces but never mark a piece done whose bytes are not on disk. The bitfield is
 * persisted on a short timer and at checkpoints (every 1/checkpointsPerBlob of the blob, whatever
 * the speed); the piece log (piece-log.ts) names what was written since. Reopening resumes from
 * the bitfield when it matches the layout, plus, given the pieces' SHA-1, the logged pieces that
 * still hash right.
 */
import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Digest } from '../core/index.js'
import { errnoCode, ShoalError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import type { TorrentStorage } from '../torrent/index.js'
import { loadBitfield, saveBitfield } from './bitfield-file.js'
import { fsyncDir, hashHandle, ioError, readFully, writeFully } from './fsutil.js'
import { type BlobLayout, checkBlock, checkLayout, pieceSize, type VerifiableLayout } from './layout.js'
import { PieceLog, readPieceLog, recoverPieces } from './piece-log.js'

export interface DownloadPaths {
  data: string
  bitfield: string
  pieceLog: string
  tmpDir: string
  cachePath: string
}

export interface PieceFileOptions {
  log?: Logger
  /** Debounce of the bitfield's persistence after a write, ms. */
  flushDelayMs: number
  /**
   * Bitfield checkpoints per blob: each costs one fdatasync and one small atomic file write; at
   * 64 a crash loses at most 1/64 of the blob beyond what the piece log recovers. 0 = the timer only.
   */
  checkpointsPerBlob: number
  onClose: () => void
}

export class PieceFile implements TorrentStorage {
  readonly pieceCount: number
  private readonly bits: Uint8Array
  private have = 0
  private dirty = false
  private flushTimer: NodeJS.Timeout | undefined
  private flushing: Promise<void> | undefined
  private refs = 1
  private state: 'open' | 'finished' | 'closed' = 'open'
  private pieceLog: PieceLog | undefined
  private readonly checkpointEvery: number
  private sinceCheckpoint = 0
  private firstFailure: ShoalError | undefined

  private constructor(
    readonly digest: Digest,
    readonly layout: BlobLayout,
    private readonly paths: DownloadPaths,
    private readonly fh: FileHandle,
    bits: Uint8Array | undefined,
    private readonly opts: PieceFileOptions,
  ) {
    this.pieceCount = layout.pieceCount
    this.bits = bits ?? new Uint8Array(Math.ceil(layout.pieceCount / 8))
    for (let i = 0; i < layout.pieceCount; i++) if (this.hasPiece(i)) this.have++
    const per = opts.checkpointsPerBlob
    this.checkpointEvery =
      per > 0 ? Math.max(1, Math.ceil(layout.pieceCount / per)) : Number.POSITIVE_INFINITY
  }

  /**
   * Opens (resuming when the persisted bitfield matches the layout and file) or starts over.
   * With the pieces' SHA-1 (a MetaInfo), the pieces the log names beyond the bitfield are
   * re-checked and kept when they match.
   */
  static async open(
    digest: Digest,
    layout: BlobLayout | VerifiableLayout,
    paths: DownloadPaths,
    opts: PieceFileOptions,
  ): Promise<PieceFile> {
    checkLayout(layout)
    const { length, pieceLength, pieceCount } = layout
    await mkdir(dirname(paths.data), { recursive: true })
    let bits = await loadBitfield(paths.bitfield, { length, pieceLength, pieceCount })
    let fh: FileHandle | undefined
    if (bits) {
      try {
        fh = await open(paths.data, 'r+')
        if ((await fh.stat()).size !== layout.length) {
          await fh.close()
          fh = undefined
        }
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw ioError(err, `cannot open download ${paths.data}`)
      }
    }
    if (!fh) {
      // Start over: a sparse file of the final size, so pieces can land in any order.
      bits = undefined
      try {
        await rm(paths.bitfield, { force: true })
        // It names pieces of the file being replaced.
        await rm(paths.pieceLog, { force: true })
        fh = await open(paths.data, 'w+', 0o644)
        await fh.truncate(layout.length)
      } catch (err) {
        await fh?.close().catch(() => undefined)
        throw ioError(err, `cannot create download ${paths.data}`, paths.data)
      }
    }
    const file = new PieceFile(digest, { length, pieceLength, pieceCount }, paths, fh, bits, opts)
    const recovered = 'pieceHash' in layout ? await file.recover(layout) : 0
    file.pieceLog = await PieceLog.open(paths.pieceLog).catch((err: unknown) => {
      opts.log?.warn(
        { digest: digest.toString(), err },
        'no piece log: after a crash, pieces written since the last checkpoint are downloaded again',
      )
      return undefined
    })
    if (file.have > 0)
      opts.log?.info(
        { digest: digest.toString(), have: file.have, recovered, pieces: pieceCount },
        'download resumed',
      )
    return file
  }

  hasPiece(i: number): boolean {
    if (!(Number.isInteger(i) && i >= 0 && i < this.pieceCount)) return false
    return ((this.bits[i >> 3] as number) & (0x80 >> (i & 7))) !== 0
  }

  missingCount(): number {
    return this.pieceCount - this.have
  }

  async readBlock(piece: number, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    this.checkUsable()
    checkBlock(this.layout, piece, offset, length, `read from ${this.digest}`)
    if (!this.hasPiece(piece))
      throw new ShoalError('INVALID_RANGE', `piece ${piece} of ${this.digest} is not downloaded yet`)
    const buf =
      into !== undefined && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length)
    return readFully(this.fh, buf, piece * this.layout.pieceLength + offset)
  }

  async writePiece(piece: number, data: Buffer): Promise<void> {
    this.checkUsable()
    if (!Number.isInteger(piece) || piece < 0 || piece >= this.pieceCount) {
      throw new ShoalError(
        'INVALID_RANGE',
        `write to ${this.digest}: piece ${piece} outside 0..${this.pieceCount - 1}`,
      )
    }
    const size = pieceSize(this.layout, piece)
    if (data.length !== size)
      throw new ShoalError(
        'SIZE_MISMATCH',
        `piece ${piece} of ${this.digest} is ${size} bytes, got ${data.length}`,
      )
    if (this.hasPiece(piece)) return
    try {
      await writeFully(this.fh, data, piece * this.layout.pieceLength)
    } catch (err) {
      const e = ioError(err, `cannot write piece ${piece} of ${this.digest}`, this.paths.data)
      // A write refused because the download was closed under it is not the cause of anything.
      if (this.state !== 'closed') this.firstFailure ??= e
      throw e
    }
    if (this.hasPiece(piece)) return
    this.claim(piece)
    // After the data write: a piece the log names has its bytes in the page cache at least.
    if (this.state === 'open') await this.pieceLog?.append(piece).catch(this.onLogError)
    if (++this.sinceCheckpoint < this.checkpointEvery) return
    this.sinceCheckpoint = 0
    // Not awaited: the engine goes on with the next piece while the bitfield is made durable
    // (flushes are serialised and only claim pieces whose bytes were synced).
    this.flush().catch(this.onFlushError)
  }

  /** Persists the bitfield now (normally debounced). */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing
    if (!this.dirty || this.state !== 'open') return
    this.flushing = this.persist()
    try {
      await this.flushing
    } finally {
      this.flushing = undefined
    }
  }

  /**
   * Verifies the whole blob by sha256 and moves it into the cache. On a mismatch the download is
   * discarded (data, bitfield and piece log deleted) and DIGEST_MISMATCH thrown. After success the handle
   * stays open, so the engine can keep seeding from this object until close().
   */
  async finish(expected: Digest): Promise<{ size: number }> {
    this.checkUsable()
    if (!expected.equals(this.digest))
      throw new ShoalError('BAD_REQUEST', `download of ${this.digest} cannot be finished as ${expected}`)
    const missing = this.missingCount()
    if (missing > 0)
      throw new ShoalError(
        'TORRENT_ERROR',
        `download of ${this.digest} is incomplete: ${missing} pieces missing`,
      )
    this.cancelFlush()
    while (this.flushing) await this.flushing.catch(() => undefined)
    const actual = await hashHandle(this.fh, this.layout.length)
    if (actual !== this.digest.hex) {
      this.opts.log?.warn(
        { digest: this.digest.toString(), actual: `sha256:${actual}` },
        'download failed sha256 verification; discarded',
      )
      await this.discard()
      throw new ShoalError(
        'DIGEST_MISMATCH',
        `downloaded data hashes to sha256:${actual}, not ${this.digest}; the download was discarded`,
        {
          details: { expected: this.digest.toString(), actual: `sha256:${actual}` },
        },
      )
    }
    await this.fh.sync()
    const dir = dirname(this.paths.cachePath)
    await mkdir(dir, { recursive: true })
    await rename(this.paths.data, this.paths.cachePath)
    await fsyncDir(dir)
    await rm(this.paths.bitfield, { force: true })
    await this.pieceLog?.close()
    this.pieceLog = undefined
    await rm(this.paths.pieceLog, { force: true })
    this.state = 'finished'
    this.dirty = false
    return { size: this.layout.length }
  }

  /** Deletes the partial download (data, bitfield, piece log) and closes it for every holder. */
  async discard(): Promise<void> {
    if (this.state === 'closed') return
    this.cancelFlush()
    this.state = 'closed'
    this.dirty = false
    await this.fh.close().catch(() => undefined)
    await this.pieceLog?.close()
    for (const path of [this.paths.data, this.paths.bitfield, this.paths.pieceLog])
      await rm(path, { force: true })
    this.opts.onClose()
  }

  /** Releases one holder; the last one flushes the bitfield and closes the file. */
  async close(): Promise<void> {
    if (this.state === 'closed' || --this.refs > 0) return
    this.cancelFlush()
    try {
      await this.flush()
    } catch (err) {
      this.opts.log?.warn(
        { err, digest: this.digest.toString() },
        'cannot persist bitfield on close; the download restarts partly',
      )
    }
    this.state = 'closed'
    await this.fh.close().catch(() => undefined)
    await this.pieceLog?.close()
    this.opts.onClose()
  }

  /** @internal the store hands the same open download to a second caller */
  acquire(): this {
    this.refs++
    return this
  }

  /**
   * Why the data stopped being writable (a full disk: INSUFFICIENT_STORAGE naming the file), kept
   * because the engine reports a storage failure in its own words; the download reports this one.
   */
  get failure(): ShoalError | undefined {
    return this.firstFailure
  }

  get closed(): boolean {
    return this.state === 'closed'
  }

  /** Verified and moved into the cache (the handle may still serve pieces). */
  get finished(): boolean {
    return this.state === 'finished'
  }

  private checkUsable(): void {
    if (this.state === 'closed') throw new ShoalError('IO_ERROR', `download of ${this.digest} is closed`)
  }

  private claim(piece: number): void {
    this.bits[piece >> 3] = (this.bits[piece >> 3] as number) | (0x80 >> (piece & 7))
    this.have++
    this.dirty = true
    this.scheduleFlush()
  }

  /** Claims the pieces the log names beyond the bitfield whose bytes still hash right. */
  private async recover(layout: VerifiableLayout): Promise<number> {
    const logged = await readPieceLog(this.paths.pieceLog, this.pieceCount).catch(() => [])
    const candidates = logged.filter((i) => !this.hasPiece(i))
    if (candidates.length === 0) return 0
    const { kept, error } = await recoverPieces(this.fh, layout, candidates)
    if (error)
      this.opts.log?.warn(
        { digest: this.digest.toString(), err: error },
        'cannot recheck pieces written before the restart',
      )
    for (const i of kept) this.claim(i)
    if (kept.length > 0) await this.flush().catch(this.onFlushError)
    return kept.length
  }

  private readonly onFlushError = (err: unknown): void => {
    this.opts.log?.warn({ err, digest: this.digest.toString() }, 'cannot checkpoint the download bitfield')
  }

  private readonly onLogError = (err: unknown): void => {
    this.opts.log?.warn({ err, digest: this.digest.toString() }, 'cannot append to the piece log')
  }

  private scheduleFlush(): void {
    if (this.flushTimer || this.state !== 'open') return
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined
      this.flush().catch((err) =>
        this.opts.log?.warn({ err, digest: this.digest.toString() }, 'cannot persist bitfield'),
      )
    }, this.opts.flushDelayMs)
    this.flushTimer.unref()
  }

  private cancelFlush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer)
    this.flushTimer = undefined
  }

  private async persist(): Promise<void> {
    this.dirty = false
    // Snapshot first: only bits whose data writes already completed; the datasync below makes
    // exactly those bytes durable before the bitfield claims them.
    const snapshot = Uint8Array.from(this.bits)
    try {
      await this.fh.datasync()
      await saveBitfield(this.paths.tmpDir, this.paths.bitfield, this.layout, snapshot)
    } catch (err) {
      this.dirty = true
      throw ioError(err, `cannot persist bitfield ${this.paths.bitfield}`, this.paths.bitfield)
    }
  }
}
