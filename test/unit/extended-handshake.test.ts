/** lib/torrent/wire/extended-handshake.ts: what a BEP 10 handshake gives, and what is ignored. */
import t from 'tap'
import { bencodeEncode } from '../../lib/core/bencode.js'
import { MAX_EXTENDED_HANDSHAKE } from '../../lib/torrent/types.js'
import { readExtendedHandshake } from '../../lib/torrent/wire/extended-handshake.js'
import { BLOCK_KEY, ZONE_KEY } from '../../lib/torrent/wire/peer-writer.js'

t.test('fields read, bounded and validated', async (t) => {
  const h = readExtendedHandshake(
    bencodeEncode({ reqq: 99_999, p: 6881, [BLOCK_KEY]: 65536, [ZONE_KEY]: 'rack-1', m: {} }),
  )
  t.same(h, { reqq: 2000, listenPort: 6881, blockOffer: 65536, zone: 'rack-1' })
  t.same(
    readExtendedHandshake(bencodeEncode({ p: 70000, [BLOCK_KEY]: 1000, [ZONE_KEY]: 'a b' })),
    {},
    'bad values ignored',
  )
  t.same(readExtendedHandshake(Buffer.from('garbage')), {}, 'garbage ignored')
  t.same(readExtendedHandshake(bencodeEncode([1, 2])), {}, 'not a dictionary')
})

t.test('a payload bigger than any real handshake is not decoded', async (t) => {
  const padding = 'x'.repeat(MAX_EXTENDED_HANDSHAKE)
  const big = bencodeEncode({ p: 6881, pad: padding })
  t.ok(big.length > MAX_EXTENDED_HANDSHAKE)
  t.same(readExtendedHandshake(big), {}, 'ignored, even though it is valid')
})
