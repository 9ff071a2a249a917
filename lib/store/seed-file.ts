/**
 * Read-only storage over a verified blob in the cache, for seeding. The file handle is opened on
 * first read and closed when idle, so an origin seeding thousands of blobs does not hold
 * thousands of descriptors.
 */
import { type FileHandle, open } from 'node:fs/promises'
import type { Digest } from '../core/index.js'
import { errnoCode, ShoalError } from '../errors/index.js'
import type { TorrentStorage } from '../torrent/index.js'
import { ioError, readFully } from './fsutil.js'
import { type BlobLayout, checkBlock, checkLayout } from './layout.js'

/** Read-only storage over a verified cached blob: every piece is present, every write refused. */
export class SeedFile implements TorrentStorage {
  readonly pieceCount: number
  private fh: Promise<FileHandle> | undefined
  private inflight = 0
  private idleTimer: NodeJS.Timeout | undefined
  private closed = false
  #lastReadAt = 0

  constructor(
    readonly digest: Digest,
    readonly layout: BlobLayout,
    private readonly path: string,
    private readonly idleMs = 30_000,
  ) {
    checkLayout(layout)
    this.pieceCount = layout.pieceCount
  }

  /** When a read last started (ms since the epoch; 0: never). */
  get lastReadAt(): number {
    return this.#lastReadAt
  }

  /** Reads in flight, or the descriptor still open from recent ones (closed after idleMs without reads). */
  get busy(): boolean {
    return this.inflight > 0 || this.fh !== undefined
  }

  hasPiece(i: number): boolean {
    return !this.closed && Number.isInteger(i) && i >= 0 && i < this.pieceCount
  }

  async readBlock(piece: number, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    if (this.closed) throw new ShoalError('IO_ERROR', `seed of ${this.digest} is closed`)
    checkBlock(this.layout, piece, offset, length, `read from ${this.digest}`)
    this.inflight++
    this.#lastReadAt = Date.now()
    try {
      this.fh ??= open(this.path, 'r')
      let fh: FileHandle
      try {
        fh = await this.fh
      } catch (err) {
        this.fh = undefined
        if (errnoCode(err) === 'ENOENT')
          throw new ShoalError('BLOB_NOT_FOUND', `blob ${this.digest} is no longer in the cache`)
        throw ioError(err, `cannot open ${this.path}`)
      }
      const buf =
        into !== undefined && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length)
      return await readFully(fh, buf, piece * this.layout.pieceLength + offset)
    } finally {
      this.inflight--
      this.armIdle()
    }
  }

  async writePiece(piece: number, _data?: Buffer): Promise<void> {
    throw new ShoalError(
      'BAD_REQUEST',
      `seed of ${this.digest} is read-only (write of piece ${piece} refused)`,
    )
  }

  /** Closes the descriptor (after reads in flight finish) and refuses further reads. Idempotent. */
  async close(): Promise<void> {
    this.closed = true
    if (this.idleTimer) clearTimeout(this.idleTimer)
    this.idleTimer = undefined
    await this.release()
  }

  private armIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer)
    this.idleTimer = undefined
    // A read that ends after close() must not leave a timer behind.
    if (this.closed) return
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined
      if (this.inflight === 0) void this.release()
      else this.armIdle()
    }, this.idleMs)
    this.idleTimer.unref()
  }

  private async release(): Promise<void> {
    const fh = this.fh
    this.fh = undefined
    if (fh) await fh.then((h) => h.close()).catch(() => undefined)
  }
}
