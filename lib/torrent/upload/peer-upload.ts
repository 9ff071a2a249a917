/**
 * The upload side's record of one peer: its queued requests, its upload slot, how it used the
 * slots it was given, and what a capped origin refused it. Created by Uploader.attach when the
 * torrent takes the connection (peer.up); written only by the Uploader (everything but
 * `refused`) and its ServeOnce (`refused`), through ownUpload(). Everyone else reads it
 * through Peer.up, a read-only view.
 *
 * Invariants (uploader.ts and serve-once.ts keep them):
 * - The peer holds an upload slot while Peer.amChoking is false (since `unchokedAt`); the
 *   Uploader's slot count is the number of attached peers holding one.
 * - `waitingSince` is 0 unless the peer is interested and choked (waiting for a slot).
 * - `serving` is true while Uploader.serve runs for the peer: at most one loop per peer.
 * - `requests` is emptied when the peer is choked (each queued request rejected, BEP 6) and
 *   when it closes.
 * - `refused` holds (piece, ms) pairs, oldest first, until ServeOnce re-advertises the piece.
 */

import type { Peer } from '../wire/peer.js'
import { RequestQueue } from './request-queue.js'

/** What subsystems other than the upload side see of PeerUpload. */
export interface PeerUploadView {
  readonly requests: Readonly<Pick<RequestQueue, 'size' | 'full'>>
  readonly serving: boolean
  readonly unchokedAt: number
  readonly waitingSince: number
  readonly lastRequestAt: number
  readonly wastedSince: number
  readonly listed: boolean
  readonly refused: readonly number[]
}

export class PeerUpload implements PeerUploadView {
  /** Requests waiting to be served, oldest first. */
  readonly requests: RequestQueue
  /** A serve loop runs for the peer (one storage read at a time). */
  serving = false
  /** When the peer last got an upload slot. */
  unchokedAt = 0
  /** Since when the peer is interested and choked (0 = not waiting). */
  waitingSince = 0
  /** When its latest request arrived (as read from the socket). */
  lastRequestAt = 0
  /**
   * Since when the peer wastes upload slots: it was given one, asked for nothing with it, and
   * has asked for nothing since (0 = it uses what it gets). The choker ranks it last and a
   * contended torrent closes it (uploader.ts).
   */
  wastedSince = 0
  /** Its IP was in the tracker's latest peer lists for the torrent (PeerSet): a peer we know is real. */
  listed: boolean
  /** Pieces a capped origin refused this peer, with when: (piece, ms) pairs (serve-once.ts). */
  readonly refused: number[] = []

  constructor(maxRequests: number, listed: boolean) {
    this.requests = new RequestQueue(maxRequests)
    this.listed = listed
  }
}

/** The writable record: for the upload side only (uploader.ts, serve-once.ts). */
export function ownUpload(peer: Peer): PeerUpload {
  return peer.up as PeerUpload
}
