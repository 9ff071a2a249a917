/**
 * Bencode (BEP 3) for metainfo, tracker answers, announces and the peer's extended handshake.
 * Encoding is the bencode package's. Decoding is ours: the package's decoder accepts what is
 * not bencode (a string shorter than its declared length, `i1.5e`, `ie`, bytes after the value)
 * and recurses once per nesting level, so `lllll…` from a peer or a tracker overflowed the
 * stack (found by test/fuzz/fuzz-bencode.test.ts). This one is strict, iterative in depth
 * terms (bounded by MAX_BENCODE_DEPTH) and throws only ShoalError.
 */
import bencode from 'bencode'
import { ShoalError } from '../errors/index.js'

/** Nesting deeper than any metainfo, tracker answer or handshake Shoal reads. */
export const MAX_BENCODE_DEPTH = 64

export function bencodeEncode(value: unknown): Buffer {
  return Buffer.from(bencode.encode(value))
}

/**
 * Decodes exactly one bencoded value filling `data`. Byte strings come back as Uint8Array
 * copies (never views of `data`), integers as numbers (safe integers only), dictionaries as
 * plain objects whose keys are the UTF-8 text of the key (hex when not valid UTF-8), set as
 * own properties (a `__proto__` key stays a key). Throws BAD_REQUEST naming the first problem
 * and its offset; callers wrap it in their own code (BAD_METAINFO, UPSTREAM_ERROR...).
 */
export function bencodeDecode(data: Uint8Array): unknown {
  const d = new Decoder(data)
  const value = d.value(0)
  if (d.at !== data.length) d.fail(`${data.length - d.at} bytes after the value`)
  return value
}

const I = 0x69
const L = 0x6c
const D = 0x64
const E = 0x65
const COLON = 0x3a
const MINUS = 0x2d
const ZERO = 0x30
const NINE = 0x39
/** 2^53 has 16 digits: more cannot be a safe integer. */
const MAX_DIGITS = 16

class Decoder {
  at = 0
  constructor(private readonly data: Uint8Array) {}

  fail(why: string): never {
    throw new ShoalError('BAD_REQUEST', `invalid bencode at byte ${this.at}: ${why}`)
  }

  value(depth: number): unknown {
    const c = this.data[this.at]
    if (c === undefined) this.fail('the data ends where a value should start')
    if (c === I) return this.integer()
    if (c >= ZERO && c <= NINE) return this.bytes()
    if (c !== L && c !== D) this.fail(`byte 0x${c.toString(16)} cannot start a value`)
    if (depth >= MAX_BENCODE_DEPTH) this.fail(`nested deeper than ${MAX_BENCODE_DEPTH}`)
    this.at++
    if (c === L) {
      const list: unknown[] = []
      while (this.data[this.at] !== E) list.push(this.value(depth + 1))
      this.at++
      return list
    }
    const dict: Record<string, unknown> = {}
    while (this.data[this.at] !== E) {
      if (this.data[this.at] === undefined) this.fail('a dictionary is not closed')
      const raw = this.bytes()
      let key = Buffer.from(raw).toString('utf8')
      if (key.includes('\uFFFD')) key = Buffer.from(raw).toString('hex')
      if (Object.hasOwn(dict, key)) this.fail(`key "${key.slice(0, 40)}" appears twice`)
      Object.defineProperty(dict, key, {
        value: this.value(depth + 1),
        enumerable: true,
        writable: true,
        configurable: true,
      })
    }
    this.at++
    return dict
  }

  /** `i<digits>e`: no leading zeros, no `-0`, safe integers only. */
  private integer(): number {
    this.at++ // 'i'
    const start = this.at
    if (this.data[this.at] === MINUS) this.at++
    const digits = this.digits()
    if (this.data[this.at] !== E) this.fail('an integer does not end with "e"')
    const negative = this.data[start] === MINUS
    if (digits.length > 1 && digits[0] === '0') this.fail('an integer has a leading zero')
    if (negative && digits === '0') this.fail('an integer is "-0"')
    this.at++
    const n = Number(digits)
    if (!Number.isSafeInteger(n)) this.fail(`integer ${digits.slice(0, 20)} is too large`)
    return negative ? -n : n
  }

  /** `<length>:<bytes>` with exactly `length` bytes present. */
  private bytes(): Uint8Array {
    const digits = this.digits()
    if (digits.length > 1 && digits[0] === '0') this.fail('a string length has a leading zero')
    if (this.data[this.at] !== COLON) this.fail('a string length is not followed by ":"')
    this.at++
    const length = Number(digits)
    if (length > this.data.length - this.at)
      this.fail(`a string of ${length} bytes, only ${this.data.length - this.at} left`)
    const out = new Uint8Array(this.data.subarray(this.at, this.at + length))
    this.at += length
    return out
  }

  private digits(): string {
    const start = this.at
    while (this.at < this.data.length) {
      const c = this.data[this.at]!
      if (c < ZERO || c > NINE) break
      if (this.at - start >= MAX_DIGITS) this.fail(`a number longer than ${MAX_DIGITS} digits`)
      this.at++
    }
    if (this.at === start) this.fail('digits expected')
    return Buffer.from(this.data.subarray(start, this.at)).toString('latin1')
  }
}
