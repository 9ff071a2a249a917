/**
 * The download side's record of one peer: what it has, whether it chokes us, what we asked it
 * for and how fast it answers. Created by Downloader.attach when the torrent takes the
 * connection (peer.down); written only by the Downloader (bits, interesting, peerChoking,
 * strikes) and its Scheduler (outstanding, withdrawn, owned, pipeline, snubbedUntil, stalls),
 * through ownDownload(). Everyone else reads it through Peer.down, a read-only view.
 *
 * Invariants (downloader.ts and scheduler.ts keep them):
 * - `bits` is counted in the picker's availability exactly once while the peer is attached
 *   (PiecePicker.peerHas / peerLost / peerHasPiece / peerLostPiece report every change), and is
 *   undefined once the peer closed and its pieces were taken out of the count.
 * - `interesting` is the number of pieces in `bits` that the picker does not `have`.
 * - `outstanding` holds one entry per request sent to this peer and not yet answered,
 *   rejected, cancelled or withdrawn; `withdrawn` is bounded by the pipeline (the latest batch).
 * - `owned` lists exactly the pieces whose PieceBuffer.owner is this peer.
 */
import type { Bitfield } from '../wire/bitfield.js'
import type { Peer } from '../wire/peer.js'
import type { PieceBuffer } from './picker.js'
import { Pipeline } from './pipeline.js'

/** What subsystems other than the download side see of PeerDownload. */
export interface PeerDownloadView {
  readonly bits: Bitfield | undefined
  readonly interesting: number
  readonly peerChoking: boolean
  readonly outstanding: ReadonlyMap<number, number>
  readonly withdrawn: ReadonlySet<number>
  readonly owned: ReadonlyArray<PieceBuffer<Peer>>
  readonly pipeline: Readonly<Pick<Pipeline, 'rate' | 'rttMin'>>
  readonly snubbedUntil: number
  readonly stalls: number
  readonly strikes: number
}

export class PeerDownload implements PeerDownloadView {
  /** The pieces the peer has (its bitfield, haves and rejects); undefined once it closed. */
  bits: Bitfield | undefined
  /** Pieces the peer has that we still lack: interest without a scan. */
  interesting = 0
  /** The peer chokes us (its choke / unchoke messages). */
  peerChoking = true
  /** Block key (piece * unitsPerPiece + offset / 16 KiB) → when it was requested, oldest first. */
  readonly outstanding = new Map<number, number>()
  /**
   * Block keys of requests to this peer that a timeout or choke withdrew (the latest batch
   * only): a block the peer still sends for one of them is late, not unrequested.
   */
  readonly withdrawn = new Set<number>()
  /** Pieces assigned to this peer (PieceBuffer.owner === the peer). */
  readonly owned: Array<PieceBuffer<Peer>> = []
  /** Its measured rate and round trip, which size its request pipeline. */
  readonly pipeline = new Pipeline()
  /** Until then the peer gets one request at a time, for new pieces only (it stalled). */
  snubbedUntil = 0
  /** Times its requests timed out (stalls) and corrupt pieces it contributed to (strikes). */
  stalls = 0
  strikes = 0

  constructor(bits: Bitfield) {
    this.bits = bits
  }
}

/** The writable record: for the download side only (downloader.ts, scheduler.ts). */
export function ownDownload(peer: Peer): PeerDownload {
  return peer.down as PeerDownload
}
