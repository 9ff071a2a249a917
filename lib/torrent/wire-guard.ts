/**
 * A byte-counting pre-parser in front of bittorrent-protocol's Wire.
 *
 * Wire buffers whatever length prefix a peer announces (up to 2^31 bytes, re-concatenating its
 * buffer on every chunk), reads a prefix with the top bit set as a negative number (treated as
 * a keep-alive, desynchronising the stream), and reads fixed-size messages without checking
 * their length (a 1-byte "have" yields index 0). So every chunk passes through here first: we
 * follow the framing without copying anything, and reject the connection on the first
 * oversized or malformed frame, before Wire ever sees it.
 */
import { MAX_MESSAGE_LENGTH } from './types.js'

const HANDSHAKE_LENGTH = 68
/** Exact message lengths (id byte included) for fixed-size messages; -1 = variable. */
const FIXED = new Int32Array(256).fill(-1)
FIXED[0] = 1 // choke
FIXED[1] = 1 // unchoke
FIXED[2] = 1 // interested
FIXED[3] = 1 // not interested
FIXED[4] = 5 // have
FIXED[6] = 13 // request
FIXED[8] = 13 // cancel
FIXED[9] = 3 // port
FIXED[0x0d] = 5 // suggest
FIXED[0x0e] = 1 // have all
FIXED[0x0f] = 1 // have none
FIXED[0x10] = 13 // reject
FIXED[0x11] = 5 // allowed fast
/** Minimum lengths for variable-size messages. */
const MIN = new Int32Array(256).fill(1)
MIN[7] = 10 // piece: index, begin and a non-empty block
MIN[20] = 2 // extended: id byte + sub-id

export class WireGuard {
  private handshakeLeft = HANDSHAKE_LENGTH
  /** Bytes of the current 5-byte header (4 length + 1 id) gathered so far. */
  private headerHave = 0
  private length = 0
  /** Body bytes (after the id) of the current message still to skip. */
  private bodyLeft = 0
  private readonly maxLength: number

  constructor(maxLength = MAX_MESSAGE_LENGTH) {
    this.maxLength = maxLength
  }

  /** Follows the framing across `chunk`; returns why the stream is invalid, or undefined. */
  check(chunk: Uint8Array): string | undefined {
    let p = 0
    const n = chunk.length
    if (this.handshakeLeft > 0) {
      if (this.handshakeLeft === HANDSHAKE_LENGTH && n > 0 && chunk[0] !== 19)
        return 'not a BitTorrent handshake'
      const take = Math.min(this.handshakeLeft, n)
      this.handshakeLeft -= take
      p = take
    }
    while (p < n) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, n - p)
        this.bodyLeft -= take
        p += take
        continue
      }
      if (this.headerHave < 4) {
        // Unsigned big-endian length, one byte at a time so chunk boundaries do not matter.
        this.length = this.length * 256 + chunk[p++]!
        this.headerHave++
        if (this.headerHave === 4) {
          if (this.length > this.maxLength) return `message length ${this.length} exceeds ${this.maxLength}`
          if (this.length === 0) this.reset() // keep-alive
        }
        continue
      }
      // headerHave === 4: this byte is the message id.
      const id = chunk[p++]!
      const fixed = FIXED[id]!
      if (fixed >= 0 ? this.length !== fixed : this.length < MIN[id]!) {
        return `malformed message id ${id} with length ${this.length}`
      }
      this.bodyLeft = this.length - 1
      this.reset()
    }
    return undefined
  }

  private reset(): void {
    this.headerHave = 0
    this.length = 0
  }
}
