/**
 * An origin's capped uplink carries each piece about once.
 *
 * Agents pick pieces rarest-first, each from its own view, so several ask the origin for the
 * same piece nobody else has yet: their requests cross while the first copy is still queued
 * at the origin or on its way, and under a cap each copy costs every agent time (measured:
 * with 20 agents at 4 MiB/s the origin sent 1.7 × the blob, and the swarm finished no sooner
 * than the origin's uplink could send those 1.7 ×). So, while the origin's egress is capped,
 * a request for a piece this origin has queued for another peer, or sent to one less than
 * `windowMs` ago, is rejected (BEP 6): the agent stops asking us for it, picks another piece
 * we alone have, and gets this one from the peer it went to. Once the window has passed the
 * piece is advertised again (a HAVE) to every peer it was refused to, so a piece whose first
 * recipient left is never out of reach for long. The window runs from the send, not from the
 * request: under a cap a request may wait at the origin for longer than the window.
 *
 * State is three typed arrays over pieces plus, per peer, a flat list of (piece, time) pairs
 * of refusals still to undo (PeerUpload.refused, which ServeOnce alone writes: the Uploader
 * owns the rest of the record): nothing is allocated per request.
 */
import type { Peer } from '../wire/peer.js'
import { ownUpload } from './peer-upload.js'

export class ServeOnce {
  /** When each piece was last queued for, then sent to, a peer (ms; 0 = never). */
  private readonly queuedAt: Float64Array
  /** 1 while the piece waits in that peer's queue (not sent yet). */
  private readonly pending: Uint8Array
  /** Who it was queued for. */
  private readonly queuedFor: Array<Peer | undefined>
  private readonly windowMs: number
  private readonly active: () => boolean
  /** Requests refused so far (the engine's metric reads it through onRefused). */
  private readonly onRefused: () => void

  constructor(pieceCount: number, windowMs: number, active: () => boolean, onRefused: () => void) {
    this.queuedAt = new Float64Array(pieceCount)
    this.pending = new Uint8Array(pieceCount)
    this.queuedFor = new Array<Peer | undefined>(pieceCount)
    this.windowMs = windowMs
    this.active = active
    this.onRefused = onRefused
  }

  /**
   * Whether to serve `peer`'s request for `piece` now. False: the caller rejects it, and the
   * piece is advertised to the peer again once the window passed (see tick). Only peers that
   * understand rejects (BEP 6) are ever refused; blocks of a piece go on to the same peer.
   */
  admit(peer: Peer, piece: number, now: number): boolean {
    if (this.windowMs <= 0 || !peer.fast || !this.active()) return true
    const other = this.queuedFor[piece]
    if (
      other !== undefined &&
      other !== peer &&
      !other.closed &&
      (this.pending[piece] === 1 || now - this.queuedAt[piece]! < this.windowMs)
    ) {
      ownUpload(peer).refused.push(piece, now)
      this.onRefused()
      return false
    }
    this.queuedAt[piece] = now
    this.pending[piece] = 1
    this.queuedFor[piece] = peer
    return true
  }

  /** A block of the piece went to `peer`: the window starts now. */
  sent(peer: Peer, piece: number, now: number): void {
    if (this.queuedFor[piece] !== peer) return
    this.queuedAt[piece] = now
    this.pending[piece] = 0
  }

  /** A request admitted for `peer` will not be served after all (cancel, choke, read error). */
  withdrawn(peer: Peer, piece: number): void {
    if (this.queuedFor[piece] !== peer || this.pending[piece] === 0) return
    this.queuedFor[piece] = undefined
    this.pending[piece] = 0
  }

  /** From the torrent's tick: re-advertises pieces refused at least a window ago. */
  tick(peers: Iterable<Peer>, now: number): void {
    for (const peer of peers) {
      const r = ownUpload(peer).refused
      if (r.length === 0 || peer.closed) continue
      let kept = 0
      for (let k = 0; k < r.length; k += 2) {
        if (now - r[k + 1]! >= this.windowMs) peer.sendHave(r[k]!)
        else {
          r[kept++] = r[k]!
          r[kept++] = r[k + 1]!
        }
      }
      r.length = kept
    }
  }

  /** A peer left: nothing is queued for it any more (what it was sent stays in the window). */
  forget(peer: Peer): void {
    const q = this.queuedFor
    for (let i = 0; i < q.length; i++) {
      if (q[i] !== peer) continue
      q[i] = undefined
      this.pending[i] = 0
    }
  }
}
