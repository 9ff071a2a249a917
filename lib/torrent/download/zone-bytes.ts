/**
 * Bytes received by the zone of the peer that sent them (DownloadStats.bytesByZone): how much of
 * a download crossed zones. Each connection already counts the piece bytes it received
 * (Peer.downloaded) and knows the zone its peer declared in the BEP 10 handshake (Peer.zone), so
 * nothing is added per block: a closing connection's count is folded in here, and the live
 * ones are summed when someone reads the figures (the agent's status, a few times a second at
 * most).
 */
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
