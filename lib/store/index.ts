/**
 * Content-addressed local store, used by the origin (uploads, cache, seeding) and the agent
 * (downloads, cache). Layout under `root`:
 *
 *   uploads/<uid>                   in-progress chunked uploads (origin)
 *   cache/<hex[0:2]>/<hex>          verified blobs; only ever created by an atomic rename
 *   cache/<hex[0:2]>/<hex>.torrent  metainfo sidecar
 *   downloads/<hex>                 swarm downloads in progress (agent), each with
 *   downloads/<hex>.bitfield        the pieces durably on disk (piece-file.ts)
 *   downloads/<hex>.pieces          the pieces written since (piece-log.ts)
 *   tmp/                            temp files; emptied by init()
 *
 * A blob appears under its cache name only after its sha256 matched and its bytes were fsynced,
 * so whatever is in cache/ can be served without checking again.
 */
import { createHash } from 'node:crypto'
import { createReadStream, statSync } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { addAbortSignal, type Readable } from 'node:stream'
import { Digest } from '../core/index.js'
import { errnoCode, ShoalError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import { atomicWriteFile, fsyncDir, ioError, tempName, writeFully } from './fsutil.js'
import type { BlobLayout, VerifiableLayout } from './layout.js'
import { PieceFile } from './piece-file.js'
import { SeedFile } from './seed-file.js'
import { allocatedBytes, freeBytes } from './space.js'
import { Uploads } from './uploads.js'

export { type BlobLayout, checkLayout, pieceSize, type VerifiableLayout } from './layout.js'
export { PieceFile } from './piece-file.js'
export { SeedFile } from './seed-file.js'
export { freeBytesSync, isNoSpaceError, noSpaceMessage } from './space.js'

const HEX64 = /^[0-9a-f]{64}$/
const SHARD = /^[0-9a-f]{2}$/
const DOWNLOAD_FILE = /^([0-9a-f]{64})(?:\.bitfield|\.pieces)?$/
const IO_CHUNK = 1 << 20

export interface BlobStoreOptions {
  logger?: Logger
  /** Debounce for persisting download bitfields, ms (default 1000). */
  bitfieldFlushMs?: number
  /** Bitfield checkpoints per download, whatever its speed (default 64; 0 = the debounce only). */
  checkpointsPerBlob?: number
  /** Seed files close their descriptor after this long without reads, ms (default 30 s). */
  seedIdleMs?: number
}

export class BlobStore {
  readonly root: string
  private readonly log: Logger | undefined
  private readonly dirs: { uploads: string; cache: string; downloads: string; tmp: string }
  private readonly uploads: Uploads
  private readonly downloads = new Map<string, Promise<PieceFile>>()
  private initialised = false

  constructor(
    root: string,
    private readonly opts: BlobStoreOptions = {},
  ) {
    this.root = root
    this.log = opts.logger?.child({ component: 'store' })
    const dir = (name: string) => join(root, name)
    this.dirs = { uploads: dir('uploads'), cache: dir('cache'), downloads: dir('downloads'), tmp: dir('tmp') }
    this.uploads = new Uploads(this.dirs.uploads, this.log)
  }

  get ready(): boolean {
    return this.initialised
  }

  /** Creates the folders and removes temp files a crash left behind. */
  async init(): Promise<void> {
    try {
      for (const dir of Object.values(this.dirs)) await mkdir(dir, { recursive: true })
      const stale = await readdir(this.dirs.tmp)
      for (const name of stale) await rm(join(this.dirs.tmp, name), { force: true, recursive: true })
      if (stale.length > 0) this.log?.info({ count: stale.length }, 'removed stale temp files')
    } catch (err) {
      throw ioError(err, `cannot initialise the store in ${this.root}`, this.root)
    }
    this.initialised = true
  }

  // ---- uploads (origin) ---------------------------------------------------------------------

  /** Starts an upload; returns its id. */
  createUpload(): Promise<string> {
    return this.uploads.create()
  }

  /** Bytes received so far; UPLOAD_NOT_FOUND when the upload does not exist. */
  uploadOffset(uid: string): Promise<number> {
    return this.uploads.offset(uid)
  }

  /**
   * Writes exactly `length` bytes of `body` at `offset`, which must be the current size
   * (INVALID_RANGE with details.offset otherwise). Streams; returns the new size.
   */
  appendUpload(
    uid: string,
    offset: number,
    body: Readable,
    length: number,
    signal?: AbortSignal,
  ): Promise<number> {
    return this.uploads.append(uid, offset, body, length, signal)
  }

  /**
   * Verifies the sha256 and moves the upload into the cache; DIGEST_MISMATCH deletes it.
   * Aborted by `signal` (ABORTED) before the move, the upload is kept as it was.
   */
  commitUpload(uid: string, expected: Digest, signal?: AbortSignal): Promise<{ size: number }> {
    return this.uploads.commit(uid, expected, (path) => this.moveIntoCache(path, expected), signal)
  }

  deleteUpload(uid: string): Promise<void> {
    return this.uploads.delete(uid)
  }

  /** Deletes uploads untouched for `maxAgeMs`; returns how many. */
  purgeUploads(maxAgeMs: number): Promise<number> {
    return this.uploads.purge(maxAgeMs)
  }

  // ---- cache --------------------------------------------------------------------------------

  blobPath(digest: Digest): string {
    return join(this.dirs.cache, digest.hex.slice(0, 2), digest.hex)
  }

  async stat(digest: Digest): Promise<{ size: number } | undefined> {
    try {
      return { size: (await stat(this.blobPath(digest))).size }
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined
      throw ioError(err, `cannot stat ${digest}`)
    }
  }

  /** Streams the blob, or bytes start..end (inclusive) of it. */
  createReadStream(digest: Digest, range?: { start: number; end: number }): Readable {
    const path = this.blobPath(digest)
    let size: number
    try {
      size = statSync(path).size
    } catch (err) {
      if (errnoCode(err) === 'ENOENT')
        throw new ShoalError('BLOB_NOT_FOUND', `blob ${digest} is not in the cache`)
      throw ioError(err, `cannot stat ${digest}`)
    }
    if (range) {
      const { start, end } = range
      if (
        !(
          Number.isSafeInteger(start) &&
          Number.isSafeInteger(end) &&
          start >= 0 &&
          start <= end &&
          end < size
        )
      ) {
        throw new ShoalError(
          'INVALID_RANGE',
          `range ${start}-${end} is outside blob ${digest} of ${size} bytes`,
          {
            details: { size },
          },
        )
      }
    }
    return createReadStream(path, { start: range?.start, end: range?.end, highWaterMark: IO_CHUNK })
  }

  /** Stores a blob from a stream (e.g. from a backend), verifying its sha256 on the way in. */
  async putStream(digest: Digest, body: Readable, signal?: AbortSignal): Promise<{ size: number }> {
    const tmp = join(this.dirs.tmp, tempName('blob'))
    const hash = createHash('sha256')
    let size = 0
    try {
      const fh = await open(tmp, 'w', 0o644)
      try {
        if (signal) addAbortSignal(signal, body)
        for await (const chunk of body) {
          const buf = chunk as Buffer
          hash.update(buf)
          await writeFully(fh, buf, size)
          size += buf.length
        }
        const actual = hash.digest('hex')
        if (actual !== digest.hex) {
          throw new ShoalError(
            'DIGEST_MISMATCH',
            `data for ${digest} hashes to sha256:${actual}; it was not stored`,
            {
              details: { expected: digest.toString(), actual: `sha256:${actual}` },
            },
          )
        }
        await fh.sync()
      } finally {
        await fh.close()
      }
      await this.moveIntoCache(tmp, digest)
      return { size }
    } catch (err) {
      await rm(tmp, { force: true })
      throw ioError(err, `cannot store ${digest}`, tmp)
    }
  }

  /** Removes the blob and its metainfo; removing an absent blob is fine. */
  async delete(digest: Digest): Promise<void> {
    await rm(this.blobPath(digest), { force: true })
    await rm(this.metaInfoPath(digest), { force: true })
  }

  /** Every blob in the cache, in hex order. */
  async *list(): AsyncIterable<Digest> {
    const shards = (await readdir(this.dirs.cache).catch(() => [] as string[]))
      .filter((s) => SHARD.test(s))
      .sort()
    for (const shard of shards) {
      const names = await readdir(join(this.dirs.cache, shard)).catch(() => [] as string[])
      for (const name of names.sort())
        if (HEX64.test(name) && name.startsWith(shard)) yield Digest.fromHex(name)
    }
  }

  async writeMetaInfo(digest: Digest, raw: Buffer): Promise<void> {
    try {
      await mkdir(join(this.dirs.cache, digest.hex.slice(0, 2)), { recursive: true })
      await atomicWriteFile(this.dirs.tmp, this.metaInfoPath(digest), raw)
    } catch (err) {
      throw ioError(err, `cannot write metainfo for ${digest}`, this.metaInfoPath(digest))
    }
  }

  async readMetaInfo(digest: Digest): Promise<Buffer | undefined> {
    try {
      return await readFile(this.metaInfoPath(digest))
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined
      throw ioError(err, `cannot read metainfo for ${digest}`)
    }
  }

  // ---- downloads (agent) and seeding --------------------------------------------------------

  /**
   * Opens (or resumes) the swarm download of `digest`: the engine's TorrentStorage, persisting
   * its bitfield and piece log as pieces land. Given the pieces' SHA-1 (a MetaInfo), a resumed
   * download also keeps the pieces written after its last checkpoint that still hash right (a
   * crash loses little). Opening a download that is already open returns the same object; every
   * caller must close() it once.
   */
  async openDownload(digest: Digest, layout: BlobLayout | VerifiableLayout): Promise<PieceFile> {
    const existing = await this.downloads.get(digest.hex)?.catch(() => undefined)
    if (existing && !existing.closed) {
      if (existing.layout.length !== layout.length || existing.layout.pieceLength !== layout.pieceLength) {
        throw new ShoalError(
          'UPLOAD_CONFLICT',
          `download of ${digest} is already open with another piece layout`,
        )
      }
      return existing.acquire()
    }
    const opening: Promise<PieceFile> = PieceFile.open(
      digest,
      layout,
      { ...this.downloadPaths(digest), tmpDir: this.dirs.tmp, cachePath: this.blobPath(digest) },
      {
        log: this.log,
        flushDelayMs: this.opts.bitfieldFlushMs ?? 1000,
        checkpointsPerBlob: this.opts.checkpointsPerBlob ?? 64,
        onClose: () => forget(),
      },
    )
    const forget = () => {
      if (this.downloads.get(digest.hex) === opening) this.downloads.delete(digest.hex)
    }
    this.downloads.set(digest.hex, opening)
    opening.catch(forget)
    return opening
  }

  /** Bytes the partial download of `digest` holds on disk (pieces written; the file is sparse). */
  async downloadBytes(digest: Digest): Promise<number> {
    const { data } = this.downloadPaths(digest)
    try {
      return await allocatedBytes(data)
    } catch (err) {
      throw ioError(err, `cannot stat download ${data}`)
    }
  }

  /** Bytes this store's file system still takes (statfs of the root). */
  async freeBytes(): Promise<number> {
    try {
      return await freeBytes(this.root)
    } catch (err) {
      throw ioError(err, `cannot read the free space of ${this.root}`)
    }
  }

  /**
   * Deletes the partial download of `digest` (data, bitfield and piece log), closing it first if it is
   * open; a download that finished is left alone. Returns the bytes released; absent is fine.
   */
  async discardDownload(digest: Digest): Promise<number> {
    const released = await this.downloadBytes(digest).catch(() => 0)
    const open = await this.downloads.get(digest.hex)?.catch(() => undefined)
    if (open?.finished) return 0
    if (open) await open.discard()
    const paths = this.downloadPaths(digest)
    try {
      for (const path of Object.values(paths)) await rm(path, { force: true })
    } catch (err) {
      throw ioError(err, `cannot delete download ${paths.data}`)
    }
    return released
  }

  /** Every digest with a partial download on disk (data, bitfield or piece log), in hex order. */
  async listDownloads(): Promise<Digest[]> {
    const hexes = new Set<string>()
    for (const name of await readdir(this.dirs.downloads).catch(() => [] as string[])) {
      const hex = DOWNLOAD_FILE.exec(name)?.[1]
      if (hex) hexes.add(hex)
    }
    return [...hexes].sort().map((hex) => Digest.fromHex(hex))
  }

  /** A read-only piece view over a cached blob, for seeding it. */
  async openSeed(digest: Digest, layout: BlobLayout): Promise<SeedFile> {
    const st = await this.stat(digest)
    if (!st) throw new ShoalError('BLOB_NOT_FOUND', `blob ${digest} is not in the cache`)
    if (st.size !== layout.length) {
      throw new ShoalError(
        'BAD_METAINFO',
        `metainfo for ${digest} describes ${layout.length} bytes; the blob has ${st.size}`,
      )
    }
    return new SeedFile(digest, layout, this.blobPath(digest), this.opts.seedIdleMs)
  }

  /** The files of the swarm download of `digest` (whether or not they exist); the store's own. */
  private downloadPaths(digest: Digest): { data: string; bitfield: string; pieceLog: string } {
    const data = join(this.dirs.downloads, digest.hex)
    return { data, bitfield: `${data}.bitfield`, pieceLog: `${data}.pieces` }
  }

  private metaInfoPath(digest: Digest): string {
    return `${this.blobPath(digest)}.torrent`
  }

  private async moveIntoCache(path: string, digest: Digest): Promise<void> {
    const dir = join(this.dirs.cache, digest.hex.slice(0, 2))
    await mkdir(dir, { recursive: true })
    await rename(path, this.blobPath(digest))
    await fsyncDir(dir)
  }
}
