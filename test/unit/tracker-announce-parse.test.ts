import bencode from 'bencode'
import t from 'tap'
import { encodeBytes, parseAnnounceResponse } from '../../lib/tracker/client/index.js'
import {
  decodeQuery,
  encodeAnnounceResponse,
  encodeFailure,
  ipToBytes,
  MAX_QUERY_BYTES,
  normaliseIp,
  type ParseOptions,
  parseAnnounce,
} from '../../lib/tracker/server/announce.js'

const OPTS: ParseOptions = {
  remoteAddress: '::ffff:192.0.2.7',
  maxNumWant: 50,
  defaultNumWant: 30,
  trustClientIp: false,
}
// Every byte value that trips naive decoders: '+', '%', '&', '=', NUL, 0x80..0xff.
const HASH = Buffer.from([
  0x2b, 0x25, 0x26, 0x3d, 0x00, 0x20, 0x7e, 0x80, 0xff, 0xc3, 0x28, 0x41, 0x7a, 0x2f, 0x3f, 0x23, 0xfe, 0x01,
  0x7f, 0x30,
])
const PEER = Buffer.from('-SA0001-abcdefghijkl')

function query(over: Record<string, string | undefined> = {}): string {
  const base: Record<string, string | undefined> = {
    info_hash: encodeBytes(HASH),
    peer_id: encodeBytes(PEER),
    port: '6881',
    uploaded: '0',
    downloaded: '10',
    left: '100',
    ...over,
  }
  return Object.entries(base)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${v}`)
    .join('&')
}

t.test('binary info_hash and peer_id are decoded byte by byte', async (t) => {
  const r = parseAnnounce(query(), OPTS)
  t.same([...r.infoHash], [...HASH], 'every byte survives, including + % & = NUL and high bytes')
  t.equal(r.infoHashHex, HASH.toString('hex'))
  t.same(r.peerId.toString('latin1'), PEER.toString('latin1'))
  t.equal(r.port, 6881)
  t.equal(r.left, 100)
  t.equal(r.downloaded, 10)
  t.equal(r.event, '')
  t.equal(r.compact, true, 'compact by default')
  t.equal(r.numwant, 30, 'default numwant when absent')
  t.equal(r.ip, '192.0.2.7', 'IPv4-mapped socket address unwrapped')
  t.equal(r.socketIp, '192.0.2.7')

  // Unreserved bytes may come literally; '+' is a space (form encoding), as stock clients expect.
  const literal = Buffer.from('abcdefghij0123456789')
  t.same(parseAnnounce(query({ info_hash: 'abcdefghij0123456789' }), OPTS).infoHash, literal)
  const spaced = parseAnnounce(query({ info_hash: 'abcdefghij012345678+' }), OPTS).infoHash
  t.equal(spaced[19], 0x20)
  // Lower-case hex escapes work too.
  t.same(parseAnnounce(query({ info_hash: encodeBytes(HASH).toLowerCase() }), OPTS).infoHash, HASH)
  // Our query round-trips with what bittorrent-tracker's client sends (escape() + manual '+').
  const stock = escape(HASH.toString('latin1')).replace(
    /[@*/+]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  )
  t.same(parseAnnounce(query({ info_hash: stock }), OPTS).infoHash, HASH, 'stock client encoding')
})

t.test('optional fields, flags, numwant cap, events', async (t) => {
  const r = parseAnnounce(query({ uploaded: undefined, downloaded: undefined, left: undefined }), OPTS)
  t.equal(r.uploaded, 0)
  t.equal(r.downloaded, 0)
  t.equal(r.left, undefined, 'absent left stays unknown (treated as incomplete)')
  t.equal(parseAnnounce(query({ numwant: '1000' }), OPTS).numwant, 50, 'numwant capped at maxNumWant')
  t.equal(parseAnnounce(query({ numwant: '0' }), OPTS).numwant, 0)
  t.equal(parseAnnounce(query({ numwant: '7' }), OPTS).numwant, 7)
  t.equal(parseAnnounce(query(), { ...OPTS, defaultNumWant: 80 }).numwant, 50, 'the default is capped too')
  t.equal(parseAnnounce(query({ compact: '0' }), OPTS).compact, false)
  t.equal(parseAnnounce(query({ no_peer_id: '1' }), OPTS).noPeerId, true)
  for (const ev of ['started', 'completed', 'stopped', ''] as const)
    t.equal(parseAnnounce(query({ event: ev }), OPTS).event, ev)
  t.equal(parseAnnounce(query({ event: 'paused' }), OPTS).event, '', 'BEP 21 paused is a regular announce')
  t.equal(
    parseAnnounce(query({ key: 'abc', trackerid: 'x', supportcrypto: '1' }), OPTS).port,
    6881,
    'unknown parameters are ignored',
  )
  t.equal(parseAnnounce(`&&${query()}&`, OPTS).port, 6881, 'empty pairs are ignored')
  t.equal(parseAnnounce(query({ left: String(Number.MAX_SAFE_INTEGER) }), OPTS).left, Number.MAX_SAFE_INTEGER)
})

t.test('ip parameter only with trustClientIp, and only literals', async (t) => {
  t.equal(parseAnnounce(query({ ip: '203.0.113.9' }), OPTS).ip, '192.0.2.7', 'ignored by default')
  const trust = { ...OPTS, trustClientIp: true }
  const r = parseAnnounce(query({ ip: '203.0.113.9' }), trust)
  t.equal(r.ip, '203.0.113.9', 'used when trusted')
  t.equal(r.socketIp, '192.0.2.7', 'the socket address is kept for origin checks')
  t.equal(parseAnnounce(query({ ip: '2001%3Adb8%3A%3A5' }), trust).ip, '2001:db8::5', 'IPv6 literal')
  t.equal(
    parseAnnounce(query({ ip: 'evil.example.com' }), trust).ip,
    '192.0.2.7',
    'host names are not accepted',
  )
  t.equal(parseAnnounce(query({ ip: '999.1.1.1' }), trust).ip, '192.0.2.7')
  t.equal(parseAnnounce(query(), { ...OPTS, remoteAddress: '2001:db8::1' }).ip, '2001:db8::1', 'IPv6 socket')
  t.equal(normaliseIp('fe80::1%eth0'), 'fe80::1', 'zone dropped')
  t.equal(normaliseIp('::FFFF:10.0.0.1'), '10.0.0.1')
})

t.test('every malformed announce is rejected with a reason', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['missing info_hash', query({ info_hash: undefined }), /info_hash is missing/],
    [
      'short info_hash',
      query({ info_hash: encodeBytes(HASH.subarray(0, 19)) }),
      /info_hash must be exactly 20 bytes \(got 19\)/,
    ],
    [
      'long info_hash',
      query({ info_hash: encodeBytes(Buffer.alloc(21)) }),
      /info_hash must be exactly 20 bytes \(got 21\)/,
    ],
    ['hex info_hash (40 chars)', query({ info_hash: HASH.toString('hex') }), /exactly 20 bytes \(got 40\)/],
    ['missing peer_id', query({ peer_id: undefined }), /peer_id is missing/],
    ['short peer_id', query({ peer_id: 'abc' }), /peer_id must be exactly 20 bytes/],
    ['missing port', query({ port: undefined }), /port is missing/],
    ['port 0', query({ port: '0' }), /out of range/],
    ['port 65536', query({ port: '65536' }), /out of range/],
    ['negative port', query({ port: '-1' }), /port must be a non-negative integer/],
    ['port with junk', query({ port: '80x' }), /port must be a non-negative integer/],
    ['empty port', query({ port: '' }), /port must be a non-negative integer/],
    ['negative left', query({ left: '-5' }), /left must be a non-negative integer/],
    ['fractional uploaded', query({ uploaded: '1.5' }), /uploaded must be a non-negative integer/],
    ['exponent downloaded', query({ downloaded: '1e3' }), /downloaded must be a non-negative integer/],
    ['unsafe left', query({ left: '99999999999999999' }), /too large|non-negative integer/],
    ['negative numwant', query({ numwant: '-1' }), /numwant must be a non-negative integer/],
    ['bad event', query({ event: 'exploded' }), /event "exploded" is not one of/],
    ['bad compact', query({ compact: 'yes' }), /compact must be 0 or 1/],
    ['duplicate info_hash', `${query()}&info_hash=${encodeBytes(HASH)}`, /given more than once/],
    ['bad escape', query({ info_hash: '%zz' }), /malformed percent-encoding/],
    ['truncated escape', query({ key: '%4' }), /malformed percent-encoding/],
    ['huge query', `${query()}&pad=${'x'.repeat(MAX_QUERY_BYTES)}`, /limit is 4096/],
    ['too many parameters', `${query()}${'&a=1'.repeat(70)}`, /more than 64 parameters/],
    ['non-byte character', query({ key: 'é€' }), /non-byte character/],
    ['empty query', '', /info_hash is missing/],
  ]
  for (const [what, q, why] of cases) {
    try {
      parseAnnounce(q, OPTS)
      t.fail(`accepted: ${what}`)
    } catch (err) {
      t.match(err, { code: 'BAD_ANNOUNCE' }, `${what}: BAD_ANNOUNCE`)
      t.match((err as Error).message, why, `${what}: says why`)
    }
  }
  t.throws(
    () => parseAnnounce(query(), { ...OPTS, remoteAddress: undefined }),
    { code: 'BAD_ANNOUNCE' },
    'no socket address',
  )
  t.equal(decodeQuery('a=1&b').get('b')?.length, 0, 'a name without a value is an empty value')
})

t.test('ip literals to bytes', async (t) => {
  t.equal(ipToBytes('192.0.2.1')?.toString('hex'), 'c0000201')
  t.equal(ipToBytes('::1')?.toString('hex'), `${'0'.repeat(31)}1`)
  t.equal(ipToBytes('2001:db8::2:1')?.toString('hex'), '20010db8000000000000000000020001')
  t.equal(ipToBytes('::ffff:1.2.3.4')?.toString('hex'), '00000000000000000000ffff01020304')
  t.equal(ipToBytes('1:2:3:4:5:6:7:8')?.toString('hex'), '00010002000300040005000600070008')
  t.equal(ipToBytes('nope'), undefined)
})

t.test('compact IPv4 entries: every octet written, anything not a literal left out', async (t) => {
  const at = (ip: string, port = 1) => ({ peerId: 'aa'.repeat(20), ip, port, complete: false, origin: false })
  const body = bencode.decode(
    encodeAnnounceResponse({
      interval: 30,
      minInterval: 10,
      complete: 0,
      incomplete: 0,
      noPeerId: false,
      compact: true,
      peers: [
        at('0.0.0.0', 65535),
        at('255.255.255.255', 2),
        at('1.2.3'),
        at('1.2.3.4.5'),
        at('256.1.1.1'),
        at('1..2.3'),
        at('1.2.3.'),
        at('1234.1.1.1'),
        at('10.20.30.40', 3),
      ],
    }),
  ) as Record<string, unknown>
  t.equal(
    Buffer.from(body.peers as Uint8Array).toString('hex'),
    '00000000ffff' + 'ffffffff0002' + '0a141e280003',
  )
  t.notOk(body.peers6, 'no IPv6 entries')
})

t.test('responses: compact v4/v6, non-compact, failure', async (t) => {
  const peers = [
    { peerId: 'aa'.repeat(20), ip: '192.0.2.1', port: 6881, complete: true, origin: true },
    { peerId: 'bb'.repeat(20), ip: '2001:db8::1', port: 6882, complete: false, origin: false },
  ]
  const base = { interval: 30, minInterval: 10, complete: 1, incomplete: 1, peers, noPeerId: false }
  const compact = bencode.decode(encodeAnnounceResponse({ ...base, compact: true })) as Record<
    string,
    unknown
  >
  t.equal(compact.interval, 30)
  t.equal(compact['min interval'], 10)
  t.equal(compact.complete, 1)
  t.equal(compact.incomplete, 1)
  t.equal(Buffer.from(compact.peers as Uint8Array).toString('hex'), 'c00002011ae1', '6-byte IPv4 entry')
  t.equal(
    Buffer.from(compact.peers6 as Uint8Array).toString('hex'),
    '20010db80000000000000000000000011ae2',
    '18-byte IPv6 entry',
  )
  const parsed = parseAnnounceResponse(encodeAnnounceResponse({ ...base, compact: true }))
  t.same(
    parsed.peers.map((p) => `${p.ip}/${p.port}`),
    ['192.0.2.1/6881', '2001:db8:0:0:0:0:0:1/6882'],
    'the client reads both back',
  )

  const full = bencode.decode(encodeAnnounceResponse({ ...base, compact: false })) as {
    peers: Array<Record<string, unknown>>
  }
  t.equal(full.peers.length, 2)
  t.equal(Buffer.from(full.peers[0]?.ip as Uint8Array).toString(), '192.0.2.1')
  t.equal(full.peers[0]?.port, 6881)
  t.equal(Buffer.from(full.peers[0]?.['peer id'] as Uint8Array).toString('hex'), 'aa'.repeat(20))
  const noId = bencode.decode(encodeAnnounceResponse({ ...base, compact: false, noPeerId: true })) as {
    peers: Array<Record<string, unknown>>
  }
  t.notOk('peer id' in (noId.peers[0] ?? {}), 'no_peer_id honoured')

  const failure = bencode.decode(encodeFailure('info_hash is missing')) as Record<string, unknown>
  t.equal(Buffer.from(failure['failure reason'] as Uint8Array).toString(), 'info_hash is missing')
  t.throws(() => parseAnnounceResponse(encodeFailure('nope')), { code: 'UPSTREAM_REFUSED', message: /nope/ })
})

t.test('client-side parsing is defensive', async (t) => {
  t.throws(() => parseAnnounceResponse(Buffer.from('<html>')), { code: 'UPSTREAM_ERROR' })
  t.throws(() => parseAnnounceResponse(Buffer.from('i42e')), { code: 'UPSTREAM_ERROR' })
  t.throws(
    () => parseAnnounceResponse(Buffer.from(bencode.encode({ interval: 5, peers: Buffer.alloc(7) }))),
    { message: /multiple of 6/ },
  )
  t.throws(() => parseAnnounceResponse(Buffer.from(bencode.encode({ interval: 5, peers: 12 }))), {
    message: /malformed "peers"/,
  })
  const odd = parseAnnounceResponse(
    Buffer.from(
      bencode.encode({
        interval: -3,
        peers: [
          { ip: 'host.example', port: 1 },
          { ip: '10.0.0.1', port: 0 },
          { ip: '10.0.0.2', port: 99999 },
          'junk',
          { ip: '10.0.0.3', port: 7, 'peer id': Buffer.alloc(3) },
        ],
      }),
    ),
  )
  t.equal(odd.interval, 60, 'nonsense interval replaced by a default')
  t.same(
    odd.peers,
    [{ ip: '10.0.0.3', port: 7 }],
    'only well-formed literal peers kept; short peer id dropped',
  )
  const zeroPort = parseAnnounceResponse(
    Buffer.from(bencode.encode({ interval: 5, peers: Buffer.from([1, 2, 3, 4, 0, 0]) })),
  )
  t.same(zeroPort.peers, [], 'port 0 entries skipped')
  t.same(parseAnnounceResponse(Buffer.from(bencode.encode({ interval: 5 }))).peers, [], 'no peers field')
})
