/**
 * The sending half of a peer connection, which Peer extends: what we told the peer (choke,
 * interest) and the encoding of every message we send. Small messages are encoded into one
 * output buffer and written once per tick (one syscall for a whole batch of requests or
 * haves); a piece is its header plus the block, one writev, from sendPiece(): the one place
 * piece data is written to a socket (an egress limiter gates its caller, Uploader.serve).
 */
import type { Socket } from 'node:net'
import type { Clock } from '../../bandwidth/index.js'
import { bencodeEncode } from '../../core/bencode.js'
import { DEFAULTS } from '../types.js'
import type { BlockPool } from '../upload/block-pool.js'
import {
  encodeBare,
  encodeHandshake,
  encodeHave,
  encodePieceHeader,
  encodeTriple,
  encodeWithPayload,
  MSG,
} from './wire.js'

/** Past this much unsent data the peer is not reading: close rather than buffer more. */
const MAX_WRITE_BUFFER = 16 << 20
const OUT_CAPACITY = 16 << 10
/**
 * How long a have may wait for other traffic to the peer (a request, a piece) to carry it.
 * Every verified piece is announced to every peer: sent at once, that was one write, one
 * wake-up and one read per piece per peer (about 2/3 of all socket writes in a 20-host swarm).
 * Most haves now ride along with requests and pieces; the rest go out in batches.
 */
export const HAVE_DELAY_MS = 100
/** Our BEP 10 handshake key for the block size offer; only Shoal peers send it. */
export const BLOCK_KEY = 'shoal_block'
/** Our BEP 10 handshake key for the sender's zone (EngineOptions.zone), when it has one. */
export const ZONE_KEY = 'shoal_zone'

export abstract class PeerWriter {
  readonly socket: Socket
  closed = false
  /** Both sides set the BEP 6 bit. */
  fast = false
  /** The peer speaks BEP 10. */
  extended = false
  amChoking = true
  amInterested = false
  /** The peer is interested in us (kept here: it decides idleness together with ours). */
  peerInterested = false
  /** Piece block bytes sent on this connection. */
  uploaded = 0
  lastSendAt: number
  /** Last piece block in either direction (leecher idle eviction). */
  lastBlockAt: number
  /** Since when neither side is interested (seeder idle eviction); 0 while someone is. */
  idleSince: number
  /** The engine's clock (EngineOptions.clock): every time and timer of the connection. */
  readonly clock: Clock
  /** The block size we offer Shoal peers. */
  protected readonly offeredBlock: number
  private out: Buffer = Buffer.allocUnsafe(OUT_CAPACITY)
  private outStart = 0
  private outEnd = 0
  private flushQueued = false
  /** A batch of haves waits for the lazy timer (HAVE_DELAY_MS). */
  private lazyArmed = false
  private lazyTimer: unknown
  private drainWaiter: (() => void) | undefined
  /** Buffers lent by a BlockPool, in the order their writes complete (sendPiece). */
  private readonly lent: Buffer[] = []
  private pool: BlockPool | undefined

  constructor(socket: Socket, offeredBlock: number, clock: Clock) {
    this.socket = socket
    this.offeredBlock = offeredBlock
    this.clock = clock
    const now = clock.now()
    this.lastSendAt = now
    this.lastBlockAt = now
    this.idleSince = now
  }

  abstract close(reason: string): void

  /** Resolves when the socket's write buffer drained (or the peer closed). */
  waitDrain(): Promise<void> {
    if (this.closed || !this.socket.writableNeedDrain) return Promise.resolve()
    return new Promise((resolve) => {
      this.drainWaiter = resolve
    })
  }

  protected readonly onDrain = (): void => {
    const w = this.drainWaiter
    this.drainWaiter = undefined
    w?.()
  }

  sendHandshake(infoHash: Buffer, ourPeerId: Buffer): void {
    const at = this.reserve(68)
    this.outEnd += encodeHandshake(this.out, at, infoHash, ourPeerId)
  }

  /**
   * BEP 10: our queue depth, listen port and (for Shoal peers) the block size we offer, and
   * our zone when we have one.
   */
  sendExtendedHandshake(listenPort: number, zone?: string): void {
    if (!this.extended) return
    const payload = bencodeEncode({
      m: {},
      p: listenPort,
      reqq: DEFAULTS.maxPeerRequests,
      v: 'Shoal 0.2',
      [BLOCK_KEY]: this.offeredBlock,
      ...(zone === undefined ? {} : { [ZONE_KEY]: zone }),
    })
    const at = this.reserve(6 + payload.length)
    this.outEnd += encodeWithPayload(this.out, at, MSG.EXTENDED, payload, 0)
  }

  sendBare(id: number): void {
    if (this.closed) return
    const at = this.reserve(5)
    this.outEnd += encodeBare(this.out, at, id)
  }

  choke(): void {
    if (this.amChoking) return
    this.amChoking = true
    this.sendBare(MSG.CHOKE)
  }

  unchoke(): void {
    if (!this.amChoking) return
    this.amChoking = false
    this.sendBare(MSG.UNCHOKE)
  }

  interested(): void {
    if (this.amInterested) return
    this.amInterested = true
    this.idleSince = 0
    this.sendBare(MSG.INTERESTED)
  }

  uninterested(): void {
    if (!this.amInterested) return
    this.amInterested = false
    if (!this.peerInterested) this.idleSince = this.clock.now()
    this.sendBare(MSG.NOT_INTERESTED)
  }

  /** Not urgent: goes out with the next other message, or within HAVE_DELAY_MS. */
  sendHave(index: number): void {
    if (this.closed) return
    const at = this.reserve(9, true)
    this.outEnd += encodeHave(this.out, at, index)
  }

  sendBitfield(bits: Uint8Array): void {
    if (this.closed) return
    const at = this.reserve(5 + bits.length)
    this.outEnd += encodeWithPayload(this.out, at, MSG.BITFIELD, bits)
  }

  sendRequest(index: number, offset: number, length: number): void {
    if (this.closed) return
    const at = this.reserve(17)
    this.outEnd += encodeTriple(this.out, at, MSG.REQUEST, index, offset, length)
  }

  sendCancel(index: number, offset: number, length: number): void {
    if (this.closed) return
    const at = this.reserve(17)
    this.outEnd += encodeTriple(this.out, at, MSG.CANCEL, index, offset, length)
  }

  /** BEP 6 only; without it a refused request is silently dropped. */
  sendReject(index: number, offset: number, length: number): void {
    if (this.closed || !this.fast) return
    const at = this.reserve(17)
    this.outEnd += encodeTriple(this.out, at, MSG.REJECT, index, offset, length)
  }

  keepAlive(): void {
    if (this.closed) return
    const at = this.reserve(4)
    this.out.writeUInt32BE(0, at)
    this.outEnd += 4
  }

  /**
   * The one place piece data is written to the socket (an egress limiter gates the caller).
   * `lent` (from `pool`, usually the buffer `block` views) goes back to the pool once the
   * socket has taken the block: write callbacks come in write order, so one bound callback and
   * a queue do it without a closure per block.
   */
  sendPiece(index: number, offset: number, block: Buffer, lent?: Buffer, pool?: BlockPool): void {
    if (this.closed) {
      if (lent !== undefined) pool?.give(lent)
      return
    }
    const at = this.reserve(13)
    this.outEnd += encodePieceHeader(this.out, at, index, offset, block.length)
    this.socket.cork()
    this.flush() // the header and any control messages queued before it, in order
    if (this.closed) {
      if (lent !== undefined) pool?.give(lent)
    } else if (lent !== undefined && pool !== undefined) {
      this.pool = pool
      this.lent.push(lent)
      this.socket.write(block, this.onBlockWritten)
    } else {
      this.socket.write(block)
    }
    this.socket.uncork()
    this.uploaded += block.length
    this.lastBlockAt = this.lastSendAt
  }

  /**
   * A lent block's write finished (or failed: the socket is gone, and so is the write). A
   * buffer whose write never completes is left to the collector, never reused early.
   */
  private readonly onBlockWritten = (): void => {
    const buf = this.lent.shift()
    if (buf !== undefined) this.pool?.give(buf)
  }

  /** Stops the lazy flush timer (the connection is closing). */
  protected cancelLazyFlush(): void {
    if (this.lazyTimer !== undefined) this.clock.clearTimer(this.lazyTimer)
    this.lazyTimer = undefined
    this.lazyArmed = false
  }

  /**
   * Room for `n` bytes in the output buffer; the batch is written at the end of the tick, or,
   * when everything in it is `lazy`, within HAVE_DELAY_MS.
   */
  private reserve(n: number, lazy = false): number {
    if (this.outEnd + n > this.out.length) {
      this.flush()
      // The socket keeps the written part alive; carry on in a fresh buffer.
      this.out = Buffer.allocUnsafe(Math.max(OUT_CAPACITY, n))
      this.outStart = 0
      this.outEnd = 0
    }
    if (this.flushQueued) return this.outEnd
    if (!lazy) {
      this.flushQueued = true
      process.nextTick(this.flushTick)
    } else if (!this.lazyArmed) {
      this.lazyArmed = true
      // One timer per connection, re-armed: no timer object per batch (the system clock).
      this.lazyTimer = this.clock.rearmTimer(this.lazyTimer, this.flushTick, HAVE_DELAY_MS)
    }
    return this.outEnd
  }

  private readonly flushTick = (): void => {
    this.flushQueued = false
    this.flush()
  }

  private flush(): void {
    // Whatever waited for the lazy timer goes now; a timer that still fires finds nothing.
    this.lazyArmed = false
    if (this.outEnd === this.outStart || this.closed) return
    this.lastSendAt = this.clock.now()
    // Uploads wait for 'drain', so only a peer that stops reading while it keeps sending
    // (e.g. requests we must reject) can grow this buffer.
    if (this.socket.writableLength > MAX_WRITE_BUFFER) {
      this.close('peer is not reading')
      return
    }
    this.socket.write(this.out.subarray(this.outStart, this.outEnd))
    this.outStart = this.outEnd
  }
}
