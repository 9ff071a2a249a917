/**
 * Content addresses. A Digest is always `sha256:<64 lowercase hex>`; parsing is strict so a
 * digest can safely become part of a file or object name.
 */
import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { ShoalError } from '../errors/index.js'

const HEX64 = /^[0-9a-f]{64}$/

export class Digest {
  readonly algorithm = 'sha256'
  readonly hex: string

  private constructor(hex: string) {
    this.hex = hex
  }

  /** Parses `sha256:<hex>`; with `{ allowBareHex: true }` also a bare 64-char hex string. */
  static parse(value: string, opts: { allowBareHex?: boolean } = {}): Digest {
    if (typeof value !== 'string' || value.length > 80) {
      throw new ShoalError('INVALID_DIGEST', 'invalid digest: expected sha256:<64 hex characters>')
    }
    const lower = value.trim().toLowerCase()
    let hex: string
    if (lower.startsWith('sha256:')) hex = lower.slice(7)
    else if (opts.allowBareHex) hex = lower
    else
      throw new ShoalError(
        'INVALID_DIGEST',
        `invalid digest "${printable(value)}": expected sha256:<64 hex characters>`,
      )
    if (!HEX64.test(hex)) {
      throw new ShoalError(
        'INVALID_DIGEST',
        `invalid digest "${printable(value)}": expected sha256:<64 hex characters>`,
      )
    }
    return new Digest(hex)
  }

  static fromHex(hex: string): Digest {
    return Digest.parse(hex, { allowBareHex: true })
  }

  static fromBuffer(data: Uint8Array): Digest {
    return new Digest(createHash('sha256').update(data).digest('hex'))
  }

  static fromHash(hash: Hash): Digest {
    return new Digest(hash.digest('hex'))
  }

  static isValid(value: string): boolean {
    try {
      Digest.parse(value)
      return true
    } catch {
      return false
    }
  }

  equals(other: Digest): boolean {
    return this.hex === other.hex
  }

  toString(): string {
    return `sha256:${this.hex}`
  }

  toJSON(): string {
    return this.toString()
  }
}

/** Streams a file through sha256; never holds more than one chunk in memory. */
export async function digestFile(
  path: string,
  signal?: AbortSignal,
): Promise<{ digest: Digest; size: number }> {
  const hash = createHash('sha256')
  let size = 0
  const stream = createReadStream(path, { highWaterMark: 1 << 20, signal })
  for await (const chunk of stream) {
    hash.update(chunk as Buffer)
    size += (chunk as Buffer).length
  }
  return { digest: Digest.fromHash(hash), size }
}

/** Renders user input for an error message without control characters. */
export function printable(value: string, max = 120): string {
  const cleaned = Array.from(String(value), (ch) => {
    const c = ch.codePointAt(0) ?? 0
    return c < 0x20 || c === 0x7f || (c >= 0x80 && c < 0xa0) ? `\\u{${c.toString(16)}}` : ch
  }).join('')
  return cleaned.length > max ? `${cleaned.slice(0, max)}…` : cleaned
}
