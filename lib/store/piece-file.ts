/**
 * A download in progress (`downloads/<hex>` + `downloads/<hex>.bitfield`), as piece-addressed
 * storage for the BitTorrent engine; it matches lib/torrent's TorrentStorage structurally (the
 * store sits below the engine and does not import it). Data is written first and the bitfield
 * persisted only after an fdatasync, so a crash can lose pieces but never mark a piece done whose
 * bytes are not on disk. Reopening resumes from the bitfield when it matches the layout.
 */
import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Digest } from '../core/index.js'
import { errnoCode, ShoalError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import { atomicWriteFile, fsyncDir, hashHandle, ioError, readFully, writeFully } from './fsutil.js'
import { type BlobLayout, checkBlock, checkLayout, type PieceStorage, pieceSize } from './layout.js'

export interface DownloadPaths {
  data: string
  bitfield: string
  tmpDir: string
  cachePath: string
}

interface BitfieldFile {
  v: 1
  length: number
  pieceLength: number
  pieceCount: number
  bits: string
}

export class PieceFile implements PieceStorage {
  readonly pieceCount: number
  private readonly bits: Uint8Array
  private have = 0
  private dirty = false
  private flushTimer: NodeJS.Timeout | undefined
  private flushing: Promise<void> | undefined
  private refs = 1
  private state: 'open' | 'finished' | 'closed' = 'open'

  private constructor(
    readonly digest: Digest,
    readonly layout: BlobLayout,
    private readonly paths: DownloadPaths,
    private readonly fh: FileHandle,
    bits: Uint8Array | undefined,
    private readonly opts: { log?: Logger; flushDelayMs: number; onClose: () => void },
  ) {
    this.pieceCount = layout.pieceCount
    this.bits = bits ?? new Uint8Array(Math.ceil(layout.pieceCount / 8))
    for (let i = 0; i < layout.pieceCount; i++) if (this.hasPiece(i)) this.have++
  }

  /** Opens (resuming when the persisted bitfield matches the layout and file) or starts over. */
  static async open(
    digest: Digest,
    layout: BlobLayout,
    paths: DownloadPaths,
    opts: { log?: Logger; flushDelayMs: number; onClose: () => void },
  ): Promise<PieceFile> {
    checkLayout(layout)
    await mkdir(dirname(paths.data), { recursive: true })
    let bits = await loadBitfield(paths, layout)
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
        fh = await open(paths.data, 'w+', 0o644)
        await fh.truncate(layout.length)
      } catch (err) {
        await fh?.close().catch(() => undefined)
        throw ioError(err, `cannot create download ${paths.data}`, paths.data)
      }
    }
    const file = new PieceFile(digest, layout, paths, fh, bits, opts)
    if (file.have > 0)
      opts.log?.info(
        { digest: digest.toString(), have: file.have, pieces: layout.pieceCount },
        'download resumed',
      )
    return file
  }

  hasPiece(i: number): boolean {
    if (!(i >= 0 && i < this.pieceCount)) return false
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
        'INVALID_RANGE',
        `piece ${piece} of ${this.digest} is ${size} bytes, got ${data.length}`,
      )
    if (this.hasPiece(piece)) return
    try {
      await writeFully(this.fh, data, piece * this.layout.pieceLength)
    } catch (err) {
      throw ioError(err, `cannot write piece ${piece} of ${this.digest}`, this.paths.data)
    }
    if (this.hasPiece(piece)) return
    this.bits[piece >> 3] = (this.bits[piece >> 3] as number) | (0x80 >> (piece & 7))
    this.have++
    this.dirty = true
    this.scheduleFlush()
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
   * discarded (data and bitfield deleted) and DIGEST_MISMATCH thrown. After success the handle
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
    this.state = 'finished'
    this.dirty = false
    return { size: this.layout.length }
  }

  /** Deletes the partial download (data and bitfield) and closes it for every holder. */
  async discard(): Promise<void> {
    if (this.state === 'closed') return
    this.cancelFlush()
    this.state = 'closed'
    this.dirty = false
    await this.fh.close().catch(() => undefined)
    await rm(this.paths.data, { force: true })
    await rm(this.paths.bitfield, { force: true })
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
    this.opts.onClose()
  }

  /** @internal the store hands the same open download to a second caller */
  acquire(): this {
    this.refs++
    return this
  }

  get closed(): boolean {
    return this.state === 'closed'
  }

  /** The data file (pieces land here until the blob is verified and moved into the cache). */
  get dataPath(): string {
    return this.paths.data
  }

  /** Verified and moved into the cache (the handle may still serve pieces). */
  get finished(): boolean {
    return this.state === 'finished'
  }

  private checkUsable(): void {
    if (this.state === 'closed') throw new ShoalError('IO_ERROR', `download of ${this.digest} is closed`)
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
    const snapshot = Buffer.from(this.bits)
    try {
      await this.fh.datasync()
      const body: BitfieldFile = { v: 1, ...pick(this.layout), bits: snapshot.toString('base64') }
      await atomicWriteFile(this.paths.tmpDir, this.paths.bitfield, Buffer.from(JSON.stringify(body)))
    } catch (err) {
      this.dirty = true
      throw ioError(err, `cannot persist bitfield ${this.paths.bitfield}`, this.paths.bitfield)
    }
  }
}

function pick(l: BlobLayout): BlobLayout {
  return { length: l.length, pieceLength: l.pieceLength, pieceCount: l.pieceCount }
}

/** The persisted bits when the file exists and describes the same layout; otherwise undefined. */
async function loadBitfield(paths: DownloadPaths, layout: BlobLayout): Promise<Uint8Array | undefined> {
  let parsed: Partial<BitfieldFile>
  try {
    const fh = await open(paths.bitfield, 'r')
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
