/**
 * What a download does about pieces that failed SHA-1. The engine has already banned the
 * sender from this torrent (briefly for an origin, which is dialled again after it); here the
 * agent tells the origin through the tracker (the tracker knows origins and their HTTP servers;
 * see lib/tracker/server/corrupt.ts), so it re-verifies its copy and restores it from the
 * backend, and the download picks it up again after the short ban. When the origin answers that
 * the backend's copy is corrupt too, nothing can serve the blob: the download fails at once with
 * BLOB_CORRUPT naming the origin and the piece, rather than stalling until stallTimeoutSeconds.
 */
import type { Digest } from '../../core/index.js'
import { ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { VerifyResult } from '../../origin/client/index.js'
import type { BadPiece } from '../../torrent/index.js'

/** Where reports go: TrackerSet (optional, so tests may leave it out). */
export interface CorruptReportSink {
  reportCorrupt(
    ns: string,
    digest: Digest,
    report: { peer: string; piece?: number },
    signal?: AbortSignal,
  ): Promise<VerifyResult>
}

export class CorruptPieces {
  /** Aborted with BLOB_CORRUPT when no copy is left; part of the download's signal. */
  private readonly failure = new AbortController()
  /** Ends reports in flight when the download is over. */
  private readonly lifetime = new AbortController()
  /** Origins (by address) a report is in flight for: one at a time each. */
  private readonly reporting = new Set<string>()
  /** The latest bad piece, for the stall message: "piece 3 from origin 1.2.3.4:15001 failed SHA-1". */
  last: string | undefined

  constructor(
    private readonly ns: string,
    private readonly digest: Digest,
    private readonly sink: CorruptReportSink | undefined,
    private readonly log: Logger,
  ) {}

  get signal(): AbortSignal {
    return this.failure.signal
  }

  /** BLOB_CORRUPT once the origin said no good copy is left; undefined until then. */
  get reason(): ShoalError | undefined {
    return this.failure.signal.aborted ? (this.failure.signal.reason as ShoalError) : undefined
  }

  /** The engine's onBadPiece (synchronous, so the work happens in the background). */
  readonly onBadPiece = (bad: BadPiece): void => {
    this.last = `piece ${bad.piece} from ${bad.cls} ${bad.peer} failed SHA-1`
    const fields = { digest: this.digest.toString(), piece: bad.piece, peer: bad.peer, banMs: bad.banMs }
    if (bad.cls !== 'origin') {
      this.log.warn(fields, 'corrupt piece from a peer; it is banned from this blob')
      return
    }
    this.log.warn(
      fields,
      'corrupt piece from an origin; reporting it, and retrying the origin after a short ban',
    )
    if (this.sink === undefined || this.reporting.has(bad.peer) || this.lifetime.signal.aborted) return
    this.reporting.add(bad.peer)
    void this.report(this.sink, bad).finally(() => this.reporting.delete(bad.peer))
  }

  /** The download is over: reports still in flight are dropped. */
  close(): void {
    this.lifetime.abort()
  }

  private async report(sink: CorruptReportSink, bad: BadPiece): Promise<void> {
    const digest = this.digest
    try {
      const verdict = await sink.reportCorrupt(
        this.ns,
        digest,
        { peer: bad.peer, piece: bad.piece },
        this.lifetime.signal,
      )
      this.log.info(
        { digest: digest.toString(), origin: bad.peer, state: verdict.state, retryInMs: bad.banMs },
        `origin verified its copy: ${verdict.message}`,
      )
    } catch (err) {
      if (this.lifetime.signal.aborted) return
      const e = toShoalError(err)
      if (e.code === 'BLOB_CORRUPT') {
        const error = new ShoalError(
          'BLOB_CORRUPT',
          `blob ${digest} is corrupt on origin ${bad.peer} (piece ${bad.piece} failed SHA-1), and the origin cannot restore it: ${e.message}`,
          { cause: err },
        )
        this.log.error(
          { digest: digest.toString(), origin: bad.peer, err: e.message },
          'no good copy of the blob is left',
        )
        this.failure.abort(error)
        return
      }
      this.log.warn(
        { digest: digest.toString(), origin: bad.peer, code: e.code, err: e.message },
        'cannot report the corrupt piece; the origin is retried after its short ban',
      )
    }
  }
}
