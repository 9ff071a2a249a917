/** A BitTorrent v1 infohash: SHA-1 of the bencoded info dictionary, 20 bytes. */
import { createHash } from 'node:crypto'
import { ShoalError } from '../errors/index.js'

const HEX40 = /^[0-9a-f]{40}$/

export class InfoHash {
  readonly hex: string
  private constructor(hex: string) {
    this.hex = hex
  }

  static fromInfoBytes(bencodedInfo: Uint8Array): InfoHash {
    return new InfoHash(createHash('sha1').update(bencodedInfo).digest('hex'))
  }

  static fromHex(hex: string): InfoHash {
    const lower = String(hex).toLowerCase()
    if (!HEX40.test(lower))
      throw new ShoalError('BAD_REQUEST', 'invalid infohash: expected 40 hex characters')
    return new InfoHash(lower)
  }

  static fromBytes(bytes: Uint8Array): InfoHash {
    if (bytes.length !== 20)
      throw new ShoalError('BAD_REQUEST', `invalid infohash: ${bytes.length} bytes, expected 20`)
    return new InfoHash(Buffer.from(bytes).toString('hex'))
  }

  toBuffer(): Buffer {
    return Buffer.from(this.hex, 'hex')
  }

  equals(other: InfoHash): boolean {
    return this.hex === other.hex
  }

  toString(): string {
    return this.hex
  }
}
