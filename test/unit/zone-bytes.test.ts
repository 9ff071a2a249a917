/** ZoneBytes: received bytes by the sender's declared zone, from per-connection counts. */
import t from 'tap'
import { ZoneBytes } from '../../lib/torrent/download/zone-bytes.js'
import { NO_ZONE } from '../../lib/torrent/types.js'

t.test('closed and live connections add up by zone; cross-zone excludes ours and undeclared', async (t) => {
  const zones = new ZoneBytes()
  zones.closed({ zone: 'a', downloaded: 100 })
  zones.closed({ zone: 'b', downloaded: 40 })
  zones.closed({ zone: undefined, downloaded: 7 })
  zones.closed({ zone: 'c', downloaded: 0 })
  const live = [
    { zone: 'a', downloaded: 1 },
    { zone: 'b', downloaded: 2 },
    { zone: undefined, downloaded: 3 },
    { zone: 'c', downloaded: 0 },
  ]
  t.same(zones.byZone(live), { a: 101, b: 42, [NO_ZONE]: 10 }, 'zones with no bytes are left out')
  t.equal(zones.crossZone(live, 'a'), 42, 'from b only: our zone and undeclared peers do not count')
  t.equal(zones.crossZone(live, 'b'), 101)
  t.equal(zones.crossZone(live, 'z'), 143, 'a zone no peer declared: every declared byte crossed')
  t.same(new ZoneBytes().byZone([]), {}, 'nothing received, nothing listed')
})
