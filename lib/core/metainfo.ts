/**
 * Torrent metainfo for a blob. The origin generates it at commit with create-torrent:
 * `name` = the digest's hex, `private` = 1, and our tracker as the only announce URL (never the
 * public trackers create-torrent adds by default). The info dictionary depends only on the
 * blob's bytes and the piece-length policy, so every origin computes the same infohash.
 */

import createTorrent from 'create-torrent'
import { ShoalError } from '../errors/index.js'
import { bencodeDecodeWithSpans } from './bencode.js'
import { InfoHash } from './infohash.js'

export const MAX_METAINFO_BYTES = 16 << 20
export const MIN_PIECE_LENGTH = 16 << 10
export const MAX_PIECE_LENGTH = 64 << 20

/**
 * Piece length for a blob of `size` bytes: the smallest power of two from 256 KiB up to 16 MiB
 * that keeps the torrent at or below 2048 pieces. Fewer, larger pieces mean less hashing and
 * bookkeeping; the lower bound keeps small files quick to start.
 */
export function pieceLengthFor(size: number): number {
  let len = 256 << 10
  while (len < 16 << 20 && Math.ceil(size / len) > 2048) len *= 2
  return len
}

export interface MetaInfoFields {
  infoHash: InfoHash
  name: string
  length: number
  pieceLength: number
  pieceHashes: Buffer
  announce: string
  private: boolean
  raw: Buffer
}

export class MetaInfo implements MetaInfoFields {
  readonly infoHash: InfoHash
  readonly name: string
  readonly length: number
  readonly pieceLength: number
  readonly pieceHashes: Buffer
  readonly announce: string
  readonly private: boolean
  readonly raw: Buffer

  private constructor(f: MetaInfoFields) {
    this.infoHash = f.infoHash
    this.name = f.name
    this.length = f.length
    this.pieceLength = f.pieceLength
    this.pieceHashes = f.pieceHashes
    this.announce = f.announce
    this.private = f.private
    this.raw = f.raw
  }

  get pieceCount(): number {
    return this.pieceHashes.length / 20
  }

  /** Size in bytes of piece `index` (the last one may be short). */
  pieceSize(index: number): number {
    if (index < this.pieceCount - 1) return this.pieceLength
    return this.length - this.pieceLength * (this.pieceCount - 1)
  }

  /** The expected SHA-1 of piece `index`, as a view into pieceHashes. */
  pieceHash(index: number): Buffer {
    return this.pieceHashes.subarray(index * 20, index * 20 + 20)
  }

  /** Parses a .torrent, strictly: single-file, sizes bounded, piece table consistent. */
  static parse(data: Uint8Array): MetaInfo {
    if (data.length > MAX_METAINFO_BYTES)
      bad(`metainfo is ${data.length} bytes; the limit is ${MAX_METAINFO_BYTES}`)
    let parsed: ReturnType<typeof bencodeDecodeWithSpans>
    try {
      parsed = bencodeDecodeWithSpans(data)
    } catch (err) {
      throw new ShoalError('BAD_METAINFO', 'metainfo is not valid bencode', { cause: err })
    }
    const { value: decoded, spans } = parsed
    if (!isDict(decoded)) bad('metainfo is not a dictionary')
    const info = decoded.info
    if (!isDict(info)) bad('metainfo has no info dictionary')
    if (info.files !== undefined)
      bad('multi-file torrents are not supported (directories travel as manifests)')
    const length = info.length
    const pieceLength = info['piece length']
    const pieces = info.pieces
    const name = info.name
    if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0)
      bad('info.length is missing or invalid')
    if (
      typeof pieceLength !== 'number' ||
      pieceLength < MIN_PIECE_LENGTH ||
      pieceLength > MAX_PIECE_LENGTH ||
      (pieceLength & (pieceLength - 1)) !== 0
    ) {
      bad('info["piece length"] must be a power of two between 16 KiB and 64 MiB')
    }
    if (!(pieces instanceof Uint8Array)) bad('info.pieces is missing')
    const expected = Math.max(1, Math.ceil(length / pieceLength)) * 20
    if (pieces.length !== expected && !(length === 0 && pieces.length === 0)) {
      bad(`info.pieces has ${pieces.length} bytes; ${expected} expected for length ${length}`)
    }
    if (!(name instanceof Uint8Array)) bad('info.name is missing')
    const announce =
      decoded.announce instanceof Uint8Array ? Buffer.from(decoded.announce).toString('utf8') : ''
    // The info dictionary's bytes as sent (see bencodeDecodeWithSpans), not a re-encoding.
    const [infoStart, infoEnd] = spans.get('info') as [number, number]
    return new MetaInfo({
      infoHash: InfoHash.fromInfoBytes(data.subarray(infoStart, infoEnd)),
      name: Buffer.from(name).toString('utf8'),
      length,
      pieceLength,
      pieceHashes: Buffer.from(pieces),
      announce,
      private: info.private === 1,
      raw: Buffer.from(data),
    })
  }

  /** Hashes the file at `path` into metainfo (streams; never loads the file). */
  static async create(
    path: string,
    opts: { name: string; announce: string; size: number; pieceLength?: number },
  ): Promise<MetaInfo> {
    if (!opts.announce) throw new ShoalError('BAD_METAINFO', 'an announce URL is required (our tracker)')
    const pieceLength = opts.pieceLength ?? pieceLengthFor(opts.size)
    const raw = await new Promise<Buffer>((resolve, reject) => {
      createTorrent(
        path,
        {
          name: opts.name,
          announceList: [[opts.announce]],
          private: true,
          pieceLength,
          createdBy: 'shoal',
        },
        (err: Error | null, torrent?: Uint8Array) => {
          if (err || !torrent)
            reject(new ShoalError('BAD_METAINFO', `cannot create metainfo: ${err?.message}`, { cause: err }))
          else resolve(Buffer.from(torrent))
        },
      )
    })
    return MetaInfo.parse(raw)
  }
}

function isDict(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array) && !Array.isArray(v)
}

function bad(why: string): never {
  throw new ShoalError('BAD_METAINFO', why)
}
