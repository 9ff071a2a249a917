/**
 * Per-download ingress caps asked for by clients (a job's bandwidth class, sent as the
 * `x-shoal-ingress-cap` header on a blob request). Requests for one digest share one download,
 * so they share its cap: the most generous one asked for so far wins (0, unlimited, beats any
 * rate), and a cap is only ever raised while the download runs, never lowered: a bulk pull
 * joining an urgent one must not slow it down. A download nobody asked to cap runs under the
 * host's caps only.
 */
import { MAX_RATE } from '../../bandwidth/bucket.js'
import type { Digest, InfoHash } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'

/** The header a client names its download's cap in, bytes per second (0 = unlimited). */
export const INGRESS_CAP_HEADER = 'x-shoal-ingress-cap'

/**
 * The header's value: undefined when absent; a plain decimal integer within the limiter's range,
 * else BAD_REQUEST (it is network input: no units, no signs, bounded length).
 */
export function parseIngressCap(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined
  const text = Array.isArray(value) ? value.join(',') : value
  const n = /^\d{1,16}$/.test(text) ? Number(text) : Number.NaN
  if (!(n <= MAX_RATE))
    throw new ShoalError(
      'BAD_REQUEST',
      `${INGRESS_CAP_HEADER} must be bytes per second as an integer from 0 to ${MAX_RATE} (0 = unlimited)`,
    )
  return n
}

/** Most generous of two caps: 0 (unlimited) wins, else the higher rate. */
function generous(a: number, b: number): number {
  return a === 0 || b === 0 ? 0 : Math.max(a, b)
}

interface Entry {
  /** undefined: a request without a cap joined (the download runs under the host's caps only). */
  rate: number | undefined
  infoHash?: InfoHash
}

export class IngressCaps {
  private readonly entries = new Map<string, Entry>()

  /** `apply` changes the cap of a running torrent (TorrentEngine.setIngressCap). */
  constructor(private readonly apply: (infoHash: InfoHash, bytesPerSec: number) => void) {}

  /**
   * A request for `digest` asks for `rate` (undefined: no cap of its own). `starting`: no
   * download runs yet, so this request's wish is the whole story.
   */
  ask(digest: Digest, rate: number | undefined, starting: boolean): void {
    const e = this.entries.get(digest.hex)
    if (starting || e === undefined) {
      // A download already running without an entry was started uncapped: it stays so.
      this.entries.set(digest.hex, { rate: starting ? rate : undefined })
      return
    }
    if (e.rate === undefined) return
    const next = rate === undefined ? 0 : generous(e.rate, rate)
    if (next === e.rate) return
    e.rate = next
    if (e.infoHash !== undefined) this.apply(e.infoHash, next)
  }

  /** The cap to start the torrent with (undefined: none), once its infohash is known. */
  started(digest: Digest, infoHash: InfoHash): number | undefined {
    const e = this.entries.get(digest.hex)
    if (e === undefined) return undefined
    e.infoHash = infoHash
    return e.rate
  }

  /** The download ended (any way). */
  finished(digest: Digest): void {
    this.entries.delete(digest.hex)
  }
}
