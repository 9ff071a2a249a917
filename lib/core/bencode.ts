/**
 * Bencode (BEP 3) for metainfo, tracker answers, announces and the peer's extended handshake.
 * Encoding is the bencode package's. Decoding is ours: the package's decoder accepts what is
 * not bencode (a string shorter than its declared length, `i1.5e`, `ie`, bytes after the value)
 * and recurses once per nesting level, so `lllll…` from a peer or a tracker overflowed the
 * stack (found by test/fuzz/fuzz-protocol.test.ts). This one is strict, recursive only to
 * MAX_BENCODE_DEPTH, decodes at most `maxValues` values (a megabyte of `0:0:0:…` would
 * otherwise cost seconds and a hundred times its size in heap), and throws only ShoalError.
 */
import { isUtf8 } from 'node:buffer'
import bencode from 'bencode'
import { ShoalError } from '../errors/index.js'

/** Nesting deeper than any metainfo, tracker answer or handshake Shoal reads. */
export const MAX_BENCODE_DEPTH = 64
/**
 * Values in one document by default: a single-file metainfo holds about 20, a tracker's
 * non-compact answer 3 per peer (at most a few hundred peers); far above both.
 */
export const MAX_BENCODE_VALUES = 20_000

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
export function bencodeDecode(data: Uint8Array, opts: { maxValues?: number } = {}): unknown {
  return decodeWhole(new Decoder(data, opts.maxValues ?? MAX_BENCODE_VALUES))
}

/**
 * bencodeDecode, plus where each value of the top-level dictionary lies in `data` (key →
 * [start, end)). A metainfo's infohash is the SHA-1 of the info dictionary's bytes as sent:
 * re-encoding the decoded value would change them when the sender's keys are not sorted or not
 * UTF-8, and the hash would no longer name the torrent its peers know.
 */
export function bencodeDecodeWithSpans(
  data: Uint8Array,
  opts: { maxValues?: number } = {},
): { value: unknown; spans: Map<string, [number, number]> } {
  const d = new Decoder(data, opts.maxValues ?? MAX_BENCODE_VALUES)
  d.spans = new Map()
  return { value: decodeWhole(d), spans: d.spans }
}

function decodeWhole(d: Decoder): unknown {
  const value = d.value(0)
  if (d.at !== d.length) d.fail(`${d.length - d.at} bytes after the value`)
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
  /** When set, the top-level dictionary's value spans are recorded here. */
  spans: Map<string, [number, number]> | undefined
  private readonly view: Buffer

  constructor(
    private readonly data: Uint8Array,
    private budget: number,
  ) {
    this.view = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  }

  get length(): number {
    return this.data.length
  }

  fail(why: string): never {
    throw new ShoalError('BAD_REQUEST', `invalid bencode at byte ${this.at}: ${why}`)
  }

  value(depth: number): unknown {
    const c = this.data[this.at]
    if (c === undefined) this.fail('the data ends where a value should start')
    if (--this.budget < 0) this.fail('more values than one document may hold')
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
      const [start, end] = this.span()
      const raw = this.view.subarray(start, end)
      const key = isUtf8(raw) ? raw.toString('utf8') : raw.toString('hex')
      if (Object.hasOwn(dict, key)) this.fail(`key "${key.slice(0, 40)}" appears twice`)
      const valueStart = this.at
      const value = this.value(depth + 1)
      if (depth === 0) this.spans?.set(key, [valueStart, this.at])
      Object.defineProperty(dict, key, {
        value,
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
    const from = this.at
    const n = this.digits()
    if (this.data[this.at] !== E) this.fail('an integer does not end with "e"')
    const negative = this.data[start] === MINUS
    if (this.at - from > 1 && this.data[from] === ZERO) this.fail('an integer has a leading zero')
    if (negative && n === 0) this.fail('an integer is "-0"')
    this.at++
    if (!Number.isSafeInteger(n))
      this.fail(`integer ${this.view.toString('latin1', from, this.at - 1)} is too large`)
    return negative ? -n : n
  }

  /** `<length>:<bytes>` with exactly `length` bytes present, as a copy. */
  private bytes(): Uint8Array {
    const [start, end] = this.span()
    return new Uint8Array(this.data.subarray(start, end))
  }

  /** Reads `<length>:` and skips the bytes; returns where they are. */
  private span(): [number, number] {
    const from = this.at
    const length = this.digits()
    if (this.at - from > 1 && this.data[from] === ZERO) this.fail('a string length has a leading zero')
    if (this.data[this.at] !== COLON) this.fail('a string length is not followed by ":"')
    this.at++
    if (length > this.data.length - this.at)
      this.fail(`a string of ${length} bytes, only ${this.data.length - this.at} left`)
    const start = this.at
    this.at += length
    return [start, this.at]
  }

  /** The decimal digits at `at` as a number (at most MAX_DIGITS of them). */
  private digits(): number {
    const start = this.at
    let n = 0
    while (this.at < this.data.length) {
      const c = this.data[this.at] as number
      if (c < ZERO || c > NINE) break
      if (this.at - start >= MAX_DIGITS) this.fail(`a number longer than ${MAX_DIGITS} digits`)
      n = n * 10 + (c - ZERO)
      this.at++
    }
    if (this.at === start) this.fail('digits expected')
    return n
  }
}
