/**
 * The BitTorrent peer wire (BEP 3, with the message ids of BEP 6 and BEP 10), read and written
 * by hand. bittorrent-protocol's Wire re-concatenated its whole buffer on every socket chunk,
 * allocated a closure and a Request per incoming request and scanned a list per block, which
 * held a leecher to ~150 MB/s with 16 KiB blocks and made larger blocks slower still. Here a
 * socket chunk is walked once: a message that lies inside the chunk is handed over as a view
 * of it (no copy), and only a message split across chunks is gathered, into a buffer reused
 * for every piece block of the connection. Framing is validated as it goes (length cap, exact
 * sizes of fixed messages), so a hostile length prefix never makes us buffer anything.
 *
 * Writing is in Peer (it owns the socket); the encoders below fill caller-provided buffers.
 */
import { MAX_MESSAGE_LENGTH } from '../types.js'

export const MSG = {
  CHOKE: 0,
  UNCHOKE: 1,
  INTERESTED: 2,
  NOT_INTERESTED: 3,
  HAVE: 4,
  BITFIELD: 5,
  REQUEST: 6,
  PIECE: 7,
  CANCEL: 8,
  PORT: 9,
  SUGGEST: 0x0d,
  HAVE_ALL: 0x0e,
  HAVE_NONE: 0x0f,
  REJECT: 0x10,
  ALLOWED_FAST: 0x11,
  EXTENDED: 20,
} as const

export const HANDSHAKE_LENGTH = 68
const PROTOCOL = Buffer.from('\x13BitTorrent protocol', 'latin1')

/** Exact message lengths (id byte included) for fixed-size messages; -1 = variable. */
const FIXED = new Int32Array(256).fill(-1)
FIXED[MSG.CHOKE] = 1
FIXED[MSG.UNCHOKE] = 1
FIXED[MSG.INTERESTED] = 1
FIXED[MSG.NOT_INTERESTED] = 1
FIXED[MSG.HAVE] = 5
FIXED[MSG.REQUEST] = 13
FIXED[MSG.CANCEL] = 13
FIXED[MSG.PORT] = 3
FIXED[MSG.SUGGEST] = 5
FIXED[MSG.HAVE_ALL] = 1
FIXED[MSG.HAVE_NONE] = 1
FIXED[MSG.REJECT] = 13
FIXED[MSG.ALLOWED_FAST] = 5
/** Minimum lengths for variable-size messages. */
const MIN = new Int32Array(256).fill(1)
MIN[MSG.PIECE] = 10 // index, begin and a non-empty block
MIN[MSG.EXTENDED] = 2 // id byte + sub-id

/** Why a message of this id and length (id byte included) is malformed, or undefined. */
export function frameError(id: number, length: number): string | undefined {
  const fixed = FIXED[id]!
  if (fixed >= 0 ? length !== fixed : length < MIN[id]!)
    return `malformed message id ${id} with length ${length}`
  return undefined
}

/** What a WireReader reports. Views (Buffer arguments) are only valid during the call. */
export interface WireHandler {
  /** `raw` is the 68-byte handshake: reserved at 20..27, infohash at 28..47, peer id at 48..67. */
  onHandshake(raw: Buffer): void
  /** Any complete message except piece; `payload` follows the id byte. Keep-alives are not reported. */
  onMessage(id: number, payload: Buffer): void
  onPiece(index: number, offset: number, block: Buffer): void
  onProtocolError(why: string): void
}

/** Below this much left of a block, the next read goes to the read buffer (readTarget). */
const DIRECT_READ_MIN = 8 << 10

const S_HANDSHAKE = 0
const S_LENGTH = 1
const S_ID = 2
const S_PIECE_HEAD = 3
const S_BODY = 4

/**
 * Incremental parser of one connection's incoming bytes. push() walks a chunk and calls the
 * handler for each complete message; stop() (e.g. from a handler that closed the connection)
 * makes it ignore the rest.
 */
export class WireReader {
  private readonly handler: WireHandler
  private readonly maxLength: number
  private state = S_HANDSHAKE
  private stopped = false
  /** Bytes of the current header field gathered (handshake, 4-byte length, 8-byte piece head). */
  private have = 0
  private length = 0
  private id = 0
  private pieceIndex = 0
  private pieceOffset = 0
  /** Where a message split across chunks is gathered; `gatherLen` bytes of it wanted. */
  private gather: Buffer
  private gatherLen = 0
  /** Reused for piece blocks split across chunks: grows to the largest block seen, once. */
  private scratch: Buffer | undefined
  /** A gathered piece block is being handed over: adoptBlock() may take it. */
  private delivering = false
  private readonly hs = Buffer.allocUnsafe(HANDSHAKE_LENGTH)
  private readonly head = Buffer.allocUnsafe(8)

  constructor(handler: WireHandler, initialBlock = 0, maxLength = MAX_MESSAGE_LENGTH) {
    this.handler = handler
    this.maxLength = maxLength
    this.gather = this.hs
    if (initialBlock > 0) this.scratch = Buffer.allocUnsafe(initialBlock)
  }

  stop(): void {
    this.stopped = true
  }

  /**
   * Where the next socket read may land: the rest of the piece block being gathered (at most
   * `max` bytes), so the kernel writes it in place and push() copies nothing; undefined between
   * blocks, or when so little is left that the read should rather bring the next messages too.
   * Gathering a 256 KiB block from 64 KiB reads copied every byte once in user space; with
   * this only the part that came in the read holding the block's header is.
   */
  readTarget(max: number): Buffer | undefined {
    if (this.stopped || this.state !== S_BODY || this.id !== MSG.PIECE) return undefined
    const left = this.gatherLen - this.have
    if (left < DIRECT_READ_MIN) return undefined
    return this.gather.subarray(this.have, this.have + Math.min(left, max))
  }

  /**
   * From inside onPiece only: the handler keeps `block`, the whole gather buffer a split piece
   * block was assembled in, and gives `replacement` for the next split block. A piece that is
   * one block (256 KiB pieces between Shoal peers) then takes the bytes without a copy: every
   * received byte was copied once more, into the piece buffer, and fresh piece buffers were
   * page-faulted in as they were filled. False (keep nothing: copy) for a block that is a view
   * of a socket read, or of part of the gather buffer.
   */
  adoptBlock(block: Buffer, replacement: Buffer): boolean {
    const s = this.scratch
    if (s === undefined || !this.delivering || block.buffer !== s.buffer) return false
    if (block.byteOffset !== s.byteOffset || block.length !== s.length) return false
    this.scratch = replacement
    // Nothing may write into the adopted memory again: the next split block gathers elsewhere.
    this.gather = this.hs
    return true
  }

  push(chunk: Buffer): void {
    const n = chunk.length
    let p = 0
    while (p < n && !this.stopped) {
      switch (this.state) {
        case S_HANDSHAKE: {
          if (this.have === 0 && chunk[p] !== 19) {
            this.fail('not a BitTorrent handshake')
            return
          }
          const take = Math.min(HANDSHAKE_LENGTH - this.have, n - p)
          chunk.copy(this.hs, this.have, p, p + take)
          this.have += take
          p += take
          if (this.have < HANDSHAKE_LENGTH) return
          if (this.hs.compare(PROTOCOL, 0, 20, 0, 20) !== 0) {
            this.fail('not a BitTorrent handshake')
            return
          }
          this.nextMessage()
          this.handler.onHandshake(this.hs)
          break
        }
        case S_LENGTH: {
          // Unsigned big-endian, a byte at a time so chunk boundaries do not matter.
          if (this.have === 0 && n - p >= 4) {
            this.length = chunk.readUInt32BE(p)
            p += 4
          } else {
            this.length = this.length * 256 + chunk[p++]!
            if (++this.have < 4) break
          }
          this.have = 0
          // A zero length is a keep-alive: wait for the next length.
          if (this.length === 0) break
          if (this.length > this.maxLength) {
            this.fail(`message length ${this.length} exceeds ${this.maxLength}`)
            return
          }
          this.state = S_ID
          break
        }
        case S_ID: {
          const id = chunk[p++]!
          const bad = frameError(id, this.length)
          if (bad !== undefined) {
            this.fail(bad)
            return
          }
          this.id = id
          if (id === MSG.PIECE) {
            this.state = S_PIECE_HEAD
            break
          }
          const bodyLen = this.length - 1
          if (bodyLen === 0) {
            this.nextMessage()
            this.handler.onMessage(id, EMPTY)
          } else if (n - p >= bodyLen) {
            const body = chunk.subarray(p, p + bodyLen)
            p += bodyLen
            this.nextMessage()
            this.handler.onMessage(id, body)
          } else {
            this.startGather(Buffer.allocUnsafe(bodyLen))
          }
          break
        }
        case S_PIECE_HEAD: {
          if (this.have === 0 && n - p >= 8) {
            this.pieceIndex = chunk.readUInt32BE(p)
            this.pieceOffset = chunk.readUInt32BE(p + 4)
            p += 8
          } else {
            const take = Math.min(8 - this.have, n - p)
            chunk.copy(this.head, this.have, p, p + take)
            this.have += take
            p += take
            if (this.have < 8) break
            this.pieceIndex = this.head.readUInt32BE(0)
            this.pieceOffset = this.head.readUInt32BE(4)
          }
          this.have = 0
          const blockLen = this.length - 9
          if (n - p >= blockLen) {
            const block = chunk.subarray(p, p + blockLen)
            p += blockLen
            this.nextMessage()
            this.handler.onPiece(this.pieceIndex, this.pieceOffset, block)
          } else {
            if (this.scratch === undefined || this.scratch.length < blockLen)
              this.scratch = Buffer.allocUnsafe(blockLen)
            this.startGather(this.scratch)
            this.gatherLen = blockLen
          }
          break
        }
        case S_BODY: {
          const take = Math.min(this.gatherLen - this.have, n - p)
          // A read that landed in place (readTarget) is already where it belongs.
          const inPlace =
            p === 0 &&
            chunk.buffer === this.gather.buffer &&
            chunk.byteOffset === this.gather.byteOffset + this.have
          if (!inPlace) chunk.copy(this.gather, this.have, p, p + take)
          this.have += take
          p += take
          if (this.have < this.gatherLen) return
          const body = this.gather.subarray(0, this.gatherLen)
          const id = this.id
          this.nextMessage()
          if (id === MSG.PIECE) {
            this.delivering = true
            try {
              this.handler.onPiece(this.pieceIndex, this.pieceOffset, body)
            } finally {
              this.delivering = false
            }
          } else this.handler.onMessage(id, body)
          break
        }
      }
    }
  }

  private startGather(buf: Buffer): void {
    this.gather = buf
    this.gatherLen = buf.length
    this.have = 0
    this.state = S_BODY
  }

  private nextMessage(): void {
    this.state = S_LENGTH
    this.have = 0
    this.length = 0
  }

  private fail(why: string): void {
    this.stopped = true
    this.handler.onProtocolError(why)
  }
}

const EMPTY = Buffer.alloc(0)

// ----- encoders: each writes one message into `buf` at `at` and returns its length -----

/** Reserved bits we set: BEP 10 extended messaging (byte 5, 0x10) and BEP 6 fast (byte 7, 0x04). */
export function encodeHandshake(buf: Buffer, at: number, infoHash: Buffer, peerId: Buffer): number {
  PROTOCOL.copy(buf, at)
  buf.fill(0, at + 20, at + 28)
  buf[at + 25] = 0x10
  buf[at + 27] = 0x04
  infoHash.copy(buf, at + 28)
  peerId.copy(buf, at + 48)
  return HANDSHAKE_LENGTH
}

/** A message without payload (choke, unchoke, interested, not interested, have all/none). */
export function encodeBare(buf: Buffer, at: number, id: number): number {
  buf.writeUInt32BE(1, at)
  buf[at + 4] = id
  return 5
}

export function encodeHave(buf: Buffer, at: number, index: number): number {
  buf.writeUInt32BE(5, at)
  buf[at + 4] = MSG.HAVE
  buf.writeUInt32BE(index, at + 5)
  return 9
}

/** request, cancel and reject share the layout: index, begin, length. */
export function encodeTriple(
  buf: Buffer,
  at: number,
  id: number,
  index: number,
  offset: number,
  length: number,
): number {
  buf.writeUInt32BE(13, at)
  buf[at + 4] = id
  buf.writeUInt32BE(index, at + 5)
  buf.writeUInt32BE(offset, at + 9)
  buf.writeUInt32BE(length, at + 13)
  return 17
}

/** The 13-byte header of a piece message whose block follows separately. */
export function encodePieceHeader(
  buf: Buffer,
  at: number,
  index: number,
  offset: number,
  blockLength: number,
): number {
  buf.writeUInt32BE(9 + blockLength, at)
  buf[at + 4] = MSG.PIECE
  buf.writeUInt32BE(index, at + 5)
  buf.writeUInt32BE(offset, at + 9)
  return 13
}

/** A message with an arbitrary payload after the id (bitfield; extended with its sub-id first). */
export function encodeWithPayload(
  buf: Buffer,
  at: number,
  id: number,
  payload: Uint8Array,
  subId = -1,
): number {
  const extra = subId >= 0 ? 1 : 0
  buf.writeUInt32BE(1 + extra + payload.length, at)
  buf[at + 4] = id
  if (extra) buf[at + 5] = subId
  buf.set(payload, at + 5 + extra)
  return 5 + extra + payload.length
}
