/**
 * Properties of what peers and trackers send: bencode, metainfo, the announce query (tracker
 * side) and answer (client side), and the peer wire decoder. Garbage is refused with the
 * parser's own ShoalError code (or, for the wire, one onProtocolError and nothing after);
 * whatever an encoder writes decodes to what it was given, however the bytes are split.
 */
import { isDeepStrictEqual } from 'node:util'
import fc from 'fast-check'
import t from 'tap'
import { bencodeDecode, bencodeEncode, MAX_BENCODE_DEPTH } from '../../lib/core/bencode.js'
import { MetaInfo } from '../../lib/core/metainfo.js'
import { MAX_MESSAGE_LENGTH, type WireHandler, WireReader } from '../../lib/torrent/index.js'
import {
  encodeBare,
  encodeHandshake,
  encodeHave,
  encodePieceHeader,
  encodeTriple,
  encodeWithPayload,
  MSG,
} from '../../lib/torrent/wire/wire.js'
import { encodeBytes, parseAnnounceResponse } from '../../lib/tracker/client/tracker-client.js'
import { encodeAnnounceResponse, parseAnnounce } from '../../lib/tracker/server/announce.js'
import { nearText, property, refusedOnlyWith } from './fuzz.js'

/** Bencodable values as the decoder returns them: safe integers, byte strings, lists, dicts. */
const { value: bvalue } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.maxSafeInteger(),
    fc.uint8Array({ maxLength: 24 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 8 }), tie('value'), { maxKeys: 4, noNullPrototype: true }),
  ),
}))

t.test('bencode', async (t) => {
  property(
    t,
    'decode(encode(v)) is v, and encodes to the same bytes',
    fc.property(bvalue, (v) => {
      const bytes = bencodeEncode(v)
      const back = bencodeDecode(bytes)
      if (!bencodeEncode(back).equals(bytes)) throw new Error(`${bytes} came back as ${bencodeEncode(back)}`)
      if (!isDeepStrictEqual(back, v)) throw new Error(`${bytes} decoded to something else`)
    }),
  )
  property(
    t,
    'any bytes, or an encoding with one byte changed, cut or added, decode or are BAD_REQUEST',
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 64 }),
        fc
          .tuple(bvalue, fc.nat(), fc.integer({ min: -1, max: 255 }), fc.constantFrom('set', 'cut', 'add'))
          .map(([v, at, byte, how]) => {
            const b = Buffer.from(bencodeEncode(v))
            const i = at % (b.length + 1)
            if (how === 'cut') return b.subarray(0, i)
            if (how === 'add')
              return Buffer.concat([b.subarray(0, i), Buffer.from([byte & 0xff]), b.subarray(i)])
            if (i < b.length) b[i] = byte & 0xff
            return b
          }),
      ),
      (b) => {
        refusedOnlyWith(['BAD_REQUEST'], () => bencodeDecode(b))
      },
    ),
  )
  property(
    t,
    'nesting of any depth is refused past the limit, never a stack overflow',
    fc.property(fc.integer({ min: 1, max: 100_000 }), fc.constantFrom('l', 'd1:a'), (n, open) => {
      const b = Buffer.from(open.repeat(n) + 'e'.repeat(n))
      const ok = refusedOnlyWith(['BAD_REQUEST'], () => bencodeDecode(b))
      if (ok !== undefined && n > MAX_BENCODE_DEPTH) throw new Error(`depth ${n} accepted`)
    }),
    10,
  )
  property(
    t,
    'any bytes are metainfo or BAD_METAINFO',
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 128 }),
        bvalue.map((v) => bencodeEncode({ info: v })),
      ),
      (b) => {
        refusedOnlyWith(['BAD_METAINFO'], () => MetaInfo.parse(b))
      },
    ),
  )
})

const OPTS = { remoteAddress: '10.1.2.3', maxNumWant: 50, defaultNumWant: 30, trustClientIp: false }
const bytes20 = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((b) => Buffer.from(b))
const param = fc.tuple(
  fc.constantFrom('info_hash', 'peer_id', 'port', 'left', 'event', 'numwant', 'compact', 'zone', 'ip', 'x'),
  nearText,
)

t.test('announce', async (t) => {
  property(
    t,
    'any query is an announce or BAD_ANNOUNCE',
    fc.property(
      fc.oneof(
        nearText,
        fc.array(param, { maxLength: 12 }).map((ps) => ps.map(([k, v]) => `${k}=${v}`).join('&')),
        fc.string({ minLength: 4000, maxLength: 5000 }),
      ),
      (q) => {
        refusedOnlyWith(['BAD_ANNOUNCE'], () => parseAnnounce(q, OPTS))
      },
    ),
  )
  property(
    t,
    'an announce the client writes is parsed to the same bytes and numbers',
    fc.property(
      bytes20,
      bytes20,
      fc.integer({ min: 1, max: 65535 }),
      fc.maxSafeNat(),
      fc.nat({ max: 1000 }),
      (ih, id, port, left, numwant) => {
        const q = `info_hash=${encodeBytes(ih)}&peer_id=${encodeBytes(id)}&port=${port}&left=${left}&numwant=${numwant}&compact=1`
        const a = parseAnnounce(q, OPTS)
        if (!a.infoHash.equals(ih) || !a.peerId.equals(id) || a.port !== port || a.left !== left)
          throw new Error(`${q} parsed as ${JSON.stringify(a)}`)
        if (a.numwant > OPTS.maxNumWant) throw new Error(`numwant ${a.numwant} over the cap`)
      },
    ),
  )
  const ipv4 = fc.ipV4()
  const peer = fc.record({
    ip: fc.oneof(ipv4, fc.constantFrom('::1', 'fe80::1', '2001:db8::8')),
    port: fc.integer({ min: 1, max: 65535 }),
    peerId: bytes20.map((b) => b.toString('hex')),
  })
  property(
    t,
    "the tracker's answer gives the client back the same peers, compact or not",
    fc.property(fc.array(peer, { maxLength: 20 }), fc.boolean(), (peers, compact) => {
      const body = encodeAnnounceResponse({
        interval: 30,
        minInterval: 10,
        complete: 0,
        incomplete: peers.length,
        peers: peers.map((p) => ({ ...p, complete: false, origin: false })),
        compact,
        noPeerId: false,
      })
      const got = parseAnnounceResponse(body)
      const addr = (ip: string, port: number) =>
        `${Buffer.from(ip.includes(':') ? canonical6(ip) : ip)}:${port}`
      const want = peers.map((p) => addr(p.ip, p.port)).sort()
      const back = got.peers.map((p) => addr(p.ip, p.port)).sort()
      if (JSON.stringify(want) !== JSON.stringify(back)) throw new Error(`${want} came back as ${back}`)
    }),
  )
  property(
    t,
    'any answer is peers or UPSTREAM_ERROR / UPSTREAM_REFUSED, with valid ports',
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 128 }),
        bvalue.map((v) => bencodeEncode(v)),
        fc
          .tuple(bvalue, bvalue, bvalue)
          .map(([a, b, c]) => bencodeEncode({ interval: a, peers: b, peers6: c })),
      ),
      (b) => {
        const r = refusedOnlyWith(['UPSTREAM_ERROR', 'UPSTREAM_REFUSED'], () =>
          parseAnnounceResponse(Buffer.from(b)),
        )
        for (const p of r?.peers ?? [])
          if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) throw new Error(`port ${p.port}`)
        if (r && !(r.interval >= 1 && r.interval <= 86_400)) throw new Error(`interval ${r.interval}`)
      },
    ),
  )
})

/** IPv6 written out in full, as the compact decoder prints it. */
function canonical6(ip: string): string {
  const [head = '', tail = ''] = ip.split('::')
  const h = head ? head.split(':') : []
  const tl = tail ? tail.split(':') : []
  const words = [...h, ...Array(8 - h.length - tl.length).fill('0'), ...tl]
  return words.map((w) => Number.parseInt(w, 16).toString(16)).join(':')
}

/** Records what a WireReader reports, copying views (they are only valid during the call). */
class Recorder implements WireHandler {
  readonly events: string[] = []
  errors = 0
  after = 0
  onHandshake(raw: Buffer): void {
    this.note(`hs ${raw.toString('hex')}`)
  }
  onMessage(id: number, payload: Buffer): void {
    if (payload.length + 1 > MAX_MESSAGE_LENGTH) throw new Error(`a message of ${payload.length} bytes`)
    this.note(`msg ${id} ${payload.toString('hex')}`)
  }
  onPiece(index: number, offset: number, block: Buffer): void {
    this.note(`piece ${index} ${offset} ${block.toString('hex')}`)
  }
  onProtocolError(why: string): void {
    this.errors++
    this.events.push(`error ${why}`)
  }
  private note(e: string): void {
    if (this.errors > 0) this.after++
    this.events.push(e)
  }
}

function feed(stream: Buffer, cuts: number[]): Recorder {
  const r = new Recorder()
  const reader = new WireReader(r)
  let from = 0
  for (const c of [...new Set(cuts.map((x) => x % (stream.length + 1)))].sort((a, b) => a - b)) {
    reader.push(stream.subarray(from, c))
    from = c
  }
  reader.push(stream.subarray(from))
  return r
}

const HS = (() => {
  const b = Buffer.alloc(68)
  encodeHandshake(b, 0, Buffer.alloc(20, 0xab), Buffer.from('-SA0001-abcdefghijkl'))
  return b
})()
const u32 = fc.nat({ max: 0xffffffff })
const message = fc.oneof(
  fc
    .constantFrom(MSG.CHOKE, MSG.UNCHOKE, MSG.INTERESTED, MSG.HAVE_ALL)
    .map((id) => (b: Buffer) => encodeBare(b, 0, id)),
  u32.map((i) => (b: Buffer) => encodeHave(b, 0, i)),
  fc.tuple(fc.constantFrom(MSG.REQUEST, MSG.CANCEL, MSG.REJECT), u32, u32, u32).map(
    ([id, i, o, l]) =>
      (b: Buffer) =>
        encodeTriple(b, 0, id, i, o, l),
  ),
  fc.tuple(u32, u32, fc.uint8Array({ minLength: 1, maxLength: 300 })).map(([i, o, block]) => (b: Buffer) => {
    const n = encodePieceHeader(b, 0, i, o, block.length)
    b.set(block, n)
    return n + block.length
  }),
  fc.uint8Array({ maxLength: 64 }).map((p) => (b: Buffer) => encodeWithPayload(b, 0, MSG.BITFIELD, p)),
  fc.tuple(fc.nat({ max: 255 }), fc.uint8Array({ maxLength: 64 })).map(
    ([sub, p]) =>
      (b: Buffer) =>
        encodeWithPayload(b, 0, MSG.EXTENDED, p, sub),
  ),
  fc.constant((b: Buffer) => b.writeUInt32BE(0, 0)), // keep-alive
)

t.test('peer wire decoder', async (t) => {
  property(
    t,
    'encoded messages decode the same however the stream is split',
    fc.property(fc.array(message, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (msgs, cuts) => {
      const parts = [HS]
      for (const m of msgs) {
        const b = Buffer.alloc(400)
        parts.push(b.subarray(0, m(b)))
      }
      const stream = Buffer.concat(parts)
      const whole = feed(stream, [])
      const split = feed(stream, cuts)
      if (whole.errors > 0) throw new Error(`valid stream refused: ${whole.events.at(-1)}`)
      if (JSON.stringify(whole.events) !== JSON.stringify(split.events))
        throw new Error('split stream differs')
      const keepAlives = msgs.filter((m) => m(Buffer.alloc(400)) === 4).length
      if (whole.events.length !== 1 + msgs.length - keepAlives)
        throw new Error(`${whole.events.length} events`)
    }),
  )
  property(
    t,
    'any bytes after a handshake: no throw, at most one protocol error and nothing after it',
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.concat([HS, b])),
        fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
        fc.tuple(fc.nat(), fc.uint8Array({ maxLength: 20 })).map(([len, rest]) => {
          const b = Buffer.alloc(4)
          b.writeUInt32BE(len % 2 ** 32)
          return Buffer.concat([HS, b, rest])
        }),
      ),
      fc.array(fc.nat(), { maxLength: 20 }),
      (stream, cuts) => {
        const r = feed(stream, cuts)
        if (r.errors > 1 || r.after > 0) throw new Error(`${r.errors} errors, ${r.after} events after one`)
      },
    ),
  )
})
