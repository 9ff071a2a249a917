/**
 * Regressions found by test/fuzz/fuzz-protocol.test.ts: the bencode package's decoder accepted
 * what is not bencode and overflowed the stack on deep nesting. Each input here is the shrunk
 * counterexample (or its family); every refusal is a ShoalError naming the offset.
 */

import { createHash } from 'node:crypto'
import t from 'tap'
import {
  bencodeDecode,
  bencodeDecodeWithSpans,
  bencodeEncode,
  MAX_BENCODE_DEPTH,
} from '../../lib/core/bencode.js'
import { MetaInfo } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'

const refused = (s: string | Buffer) => {
  try {
    bencodeDecode(Buffer.isBuffer(s) ? s : Buffer.from(s, 'latin1'))
    return 'accepted'
  } catch (err) {
    return isShoalError(err, 'BAD_REQUEST') ? (err as Error).message : `threw ${(err as Error).name}`
  }
}

t.test('malformed bencode the package accepted is refused with BAD_REQUEST', async (t) => {
  const cases: Record<string, RegExp> = {
    '5:ab': /a string of 5 bytes, only 2 left/,
    'i1.5e': /does not end with "e"/,
    ie: /digits expected/,
    'i-0e': /"-0"/,
    i01e: /leading zero/,
    '01:a': /leading zero/,
    '0:x': /1 bytes after the value/,
    i99999999999999999e: /longer than 16 digits/,
    i9007199254740993e: /too large/,
    'd1:a0:1:a0:e': /appears twice/,
    'd1:a0:': /not closed/,
    l: /ends where a value should start/,
    '-1:': /cannot start a value/,
    '': /ends where a value should start/,
  }
  for (const [input, why] of Object.entries(cases)) t.match(refused(input), why, JSON.stringify(input))
})

t.test('deep nesting is refused at the limit, never a stack overflow', async (t) => {
  for (const n of [MAX_BENCODE_DEPTH + 1, 100_000, 1_000_000]) {
    t.match(refused('l'.repeat(n) + 'e'.repeat(n)), /nested deeper than 64/, `l × ${n}`)
    t.match(refused('d1:a'.repeat(n) + 'e'.repeat(n)), /nested deeper than 64/, `d × ${n}`)
  }
  const ok = 'l'.repeat(MAX_BENCODE_DEPTH) + 'e'.repeat(MAX_BENCODE_DEPTH)
  t.equal(refused(ok), 'accepted', 'the limit itself is accepted')
})

t.test('valid bencode decodes as before: copies, own keys, hex for binary keys', async (t) => {
  const input = Buffer.from('d9:__proto__i1e1:al3:abci-7ee1:di0ee')
  const v = bencodeDecode(input) as Record<string, unknown>
  t.ok(Object.hasOwn(v, '__proto__'), '__proto__ is an own key, not the prototype')
  t.equal(Object.getPrototypeOf(v), Object.prototype)
  t.same(v.a, [new Uint8Array(Buffer.from('abc')), -7])
  t.equal(v.d, 0)
  const s = (v.a as Uint8Array[])[0]!
  input.fill(0)
  t.equal(Buffer.from(s).toString(), 'abc', 'byte strings are copies, not views of the input')
  const bin = bencodeDecode(
    Buffer.concat([Buffer.from('d2:'), Buffer.from([0xff, 0xfe]), Buffer.from('i1ee')]),
  )
  t.same(bin, { fffe: 1 }, 'a key that is not UTF-8 comes back as hex (as the package did)')
  t.same(bencodeDecode(bencodeEncode({ b: [1, 2], a: Buffer.from('x') })), {
    a: new Uint8Array([120]),
    b: [1, 2],
  })
})

t.test('a document of many tiny values is refused past the value budget, quickly', async (t) => {
  const many = Buffer.from(`l${'0:'.repeat(500_000)}e`)
  const started = performance.now()
  t.throws(() => bencodeDecode(many), {
    code: 'BAD_REQUEST',
    message: /more values than one document may hold/,
  })
  t.comment(`refused in ${(performance.now() - started).toFixed(1)} ms`)
  t.equal(
    (bencodeDecode(Buffer.from(`l${'0:'.repeat(100)}e`)) as unknown[]).length,
    100,
    'a list of 100 empty strings is fine',
  )
  t.throws(() => bencodeDecode(Buffer.from('l0:0:0:e'), { maxValues: 3 }), { code: 'BAD_REQUEST' })
  t.same(bencodeDecode(Buffer.from('d3:key5:valuee')), { key: new Uint8Array(Buffer.from('value')) })
  t.same(
    Object.keys(bencodeDecode(Buffer.from('d1:\xff1:ae', 'latin1')) as object),
    ['ff'],
    'a non-UTF-8 key as hex',
  )
  t.equal(bencodeDecode(Buffer.from('i9007199254740991e')), Number.MAX_SAFE_INTEGER)
  t.throws(() => bencodeDecode(Buffer.from('i9007199254740993e')), { code: 'BAD_REQUEST' })
  t.throws(() => bencodeDecode(Buffer.from('i007e')), { code: 'BAD_REQUEST' })
})

t.test('the infohash is the SHA-1 of the info bytes as sent, not of a re-encoding', async (t) => {
  // A stock client hashes the info dictionary exactly as it appears in the .torrent. One whose
  // keys are out of order (BEP 3 asks for sorted keys; some writers do not sort) re-encodes to
  // different bytes, so hashing a re-encoding would name another torrent than its peers know.
  const pieces = Buffer.alloc(20, 7)
  const info = Buffer.concat([
    Buffer.from('d6:lengthi5e4:name1:x6:pieces20:'),
    pieces,
    Buffer.from('12:piece lengthi16384ee'),
  ])
  const torrent = Buffer.concat([Buffer.from('d4:info'), info, Buffer.from('e')])
  const meta = MetaInfo.parse(torrent)
  t.equal(meta.infoHash.hex, createHash('sha1').update(info).digest('hex'), 'hash of the raw slice')
  const sorted = bencodeEncode(bencodeDecode(info))
  t.not(Buffer.compare(sorted, info), 0, 'this info dictionary re-encodes to other bytes')

  const { value, spans } = bencodeDecodeWithSpans(Buffer.from('d1:ai1e1:bli2eee'))
  t.same(value, { a: 1, b: [2] })
  t.same(
    [...spans],
    [
      ['a', [4, 7]],
      ['b', [10, 15]],
    ],
    'top-level value spans, [start, end)',
  )
})
