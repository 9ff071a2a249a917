/**
 * The engine's ban list is per torrent: a peer banned for a bad piece of one blob is still
 * dialled and accepted for every other blob (one corrupt copy on an origin must not lock an
 * agent out of the origin's other blobs), while the ban still covers its id, the dialled
 * address and, for incoming connections, its IP within that torrent.
 */
import t from 'tap'
import { ManualClock } from '../../lib/bandwidth/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { Registry } from '../../lib/metrics/index.js'
import { EngineCore } from '../../lib/torrent/engine/engine-core.js'
import type { Peer } from '../../lib/torrent/wire/peer.js'

const A = 'aa'.repeat(20)
const B = 'bb'.repeat(20)

function core(clock = new ManualClock()): EngineCore {
  return new EngineCore(
    {
      role: 'agent',
      port: 0,
      peerSource: { announce: async () => ({ interval: 60, peers: [] }) },
      logger: silentLogger(),
      registry: new Registry(),
      clock,
    },
    '127.0.0.1',
  )
}

function peer(direction: 'in' | 'out'): Peer {
  return { idHex: 'cc'.repeat(20), addr: '10.0.0.7:6881', ip: '10.0.0.7', direction, cls: 'agent' } as Peer
}

t.test('a ban covers one torrent: id, dialled address and IP, not the same peer elsewhere', async (t) => {
  const c = core()
  c.ban(A, peer('out'), 'corrupt piece')
  t.ok(c.isBanned(A, 'cc'.repeat(20)), 'its id is banned from torrent A')
  t.ok(c.isBanned(A, '10.0.0.7:6881'), 'the dialled address is banned from torrent A')
  t.ok(c.isBanned(A, 'ip 10.0.0.7'), 'its IP is refused for torrent A')
  t.notOk(c.isBanned(B, 'cc'.repeat(20)), 'its id is welcome in torrent B')
  t.notOk(c.isBanned(B, '10.0.0.7:6881'), 'its address is dialled for torrent B')
  t.notOk(c.isBanned(B, 'ip 10.0.0.7'), 'its IP is accepted for torrent B')
})

t.test('a ban ends after its duration; a shorter one never shortens a longer one', async (t) => {
  const clock = new ManualClock()
  const c = core(clock)
  c.ban(A, peer('in'), 'stalled', 1)
  clock.advance(1)
  t.notOk(c.isBanned(A, 'ip 10.0.0.7'), 'a 1-ms ban is over')
  c.ban(A, peer('in'), 'corrupt piece', 60_000)
  c.ban(A, peer('in'), 'stalled', 1)
  clock.advance(20)
  t.ok(c.isBanned(A, 'ip 10.0.0.7'), 'the longer ban still runs')
})
