/**
 * Bytes received by the zone of the peer that sent them (DownloadStats.bytesByZone): how much of
 * a download crossed zones. Each connection already counts the piece bytes it received
 * (Peer.downloaded) and knows the zone its peer declared in the BEP 10 handshake (Peer.zone), so
 * nothing is added per block: a closing connection's count is folded in here, and the live
 * ones are summed when someone reads the figures (the agent's status, a few times a second at
 * most).
 */
import { Counter, type Registry } from '../../metrics/index.js'
import { NO_ZONE } from '../types.js'
import type { Peer } from '../wire/peer.js'

type Sender = Pick<Peer, 'zone' | 'downloaded'>

export class ZoneBytes {
  /** Closed connections' bytes, by declared zone (NO_ZONE for none). */
  private readonly done = new Map<string, number>()
  /** Closed connections' bytes from any declared zone, for crossZone without a scan of `done`. */
  private doneZoned = 0

  /** A connection closed: its bytes stay counted. */
  closed(peer: Sender): void {
    if (peer.downloaded === 0) return
    const key = peer.zone ?? NO_ZONE
    this.done.set(key, (this.done.get(key) ?? 0) + peer.downloaded)
    if (peer.zone !== undefined) this.doneZoned += peer.downloaded
  }

  /** Every zone's bytes: closed connections' plus the live ones'. */
  byZone(live: Iterable<Sender>): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [zone, n] of this.done) out[zone] = n
    for (const p of live) {
      if (p.downloaded === 0) continue
      const key = p.zone ?? NO_ZONE
      out[key] = (out[key] ?? 0) + p.downloaded
    }
    return out
  }

  /** Bytes from peers that declared a zone other than `own`. */
  crossZone(live: Iterable<Sender>, own: string): number {
    let n = this.doneZoned - (this.done.get(own) ?? 0)
    for (const p of live) if (p.zone !== undefined && p.zone !== own) n += p.downloaded
    return n
  }
}

/** Where a sender is, seen from us: its declared zone is ours, another one, or none. */
type Locality = 'same' | 'other' | 'none'

function locality(zone: string | undefined, own: string | undefined): Locality {
  if (zone === undefined || own === undefined) return 'none'
  return zone === own ? 'same' : 'other'
}

/**
 * The engine-wide counter `shoal_torrent_bytes_received_by_locality_total{locality}`: piece
 * bytes received from peers of our zone, of another zone, or of none (or when we have none).
 * By locality rather than by zone name: a zone is what a peer says, and a label per claimed
 * name would let one peer grow the metric without bound. Read at scrape time from the
 * connections' counts, like bytesByZone: nothing per block.
 */
export class ZoneCounter {
  private readonly done: Record<Locality, number> = { same: 0, other: 0, none: 0 }

  constructor(
    registry: Registry,
    private readonly own: string | undefined,
    live: () => Iterable<Sender>,
  ) {
    const name = 'shoal_torrent_bytes_received_by_locality_total'
    // A second engine on the same registry (tests) takes the metric over, as liveGauge does.
    if (registry.getSingleMetric(name)) registry.removeSingleMetric(name)
    const done = this.done
    new Counter({
      name,
      help: "Piece bytes received, by the sender's declared zone: ours (same), another (other), none",
      labelNames: ['locality'],
      registers: [registry],
      collect() {
        const now = { ...done }
        for (const p of live()) now[locality(p.zone, own)] += p.downloaded
        this.reset()
        for (const l of ['same', 'other', 'none'] as const) this.inc({ locality: l }, now[l])
      },
    })
  }

  /** A connection closed: its bytes stay counted. */
  closed(peer: Sender): void {
    this.done[locality(peer.zone, this.own)] += peer.downloaded
  }
}
