/**
 * The configured trackers as one PeerSource (and metainfo source) for the engine and the agent.
 * The tracker for an infohash is chosen by rendezvous hashing over the set, so every agent and
 * origin configured with the same list announces a torrent to the same tracker, and the swarm
 * meets there even when trackers do not share a peer store. A tracker that fails (unreachable,
 * timed out, not answering like a tracker) is passed over for a while, doubling per consecutive
 * failure, and the request goes to the next one in that infohash's order; once the pause is
 * over it is tried first again, so traffic moves back. A tracker's refusal ('failure reason')
 * or a coded answer such as BLOB_NOT_FOUND is an answer, not a failure: it is returned as is.
 */
import type { Digest } from '../../core/index.js'
import { ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { type Counter, counter, type Gauge, gauge, type Registry } from '../../metrics/index.js'
import type { VerifyResult } from '../../origin/client/index.js'
import type { AnnounceRequest, AnnounceResponse, PeerSource } from '../../torrent/index.js'
import { rendezvousOrder } from './rendezvous.js'
import { isTrackerFault, TrackerClient } from './tracker-client.js'

/** What TrackerSet needs of one tracker: TrackerClient, or a stand-in in tests. */
export type TrackerLike = Pick<TrackerClient, 'baseUrl' | 'announce' | 'metainfo'> &
  Partial<Pick<TrackerClient, 'reportCorrupt'>>

export interface TrackerSetOptions {
  logger?: Logger
  registry?: Registry
  /** Per-request deadline of the clients built from addresses, ms (TrackerClient's default). */
  timeoutMs?: number
  /** How long a failed tracker is passed over; doubles per consecutive failure. Default 15 s. */
  retryMs?: number
  /** Upper bound of that pause. Default 5 min. */
  maxRetryMs?: number
  /** Clock, for tests. */
  now?: () => number
  /** This host's zone, sent on announces by the clients built from addresses. */
  zone?: string
}

export interface TrackerHealth {
  url: string
  up: boolean
  failures: number
  /** While down: when it is tried first again (epoch ms). */
  retryAt?: number
  lastError?: string
}

interface Entry {
  readonly client: TrackerLike
  readonly url: string
  failures: number
  downUntil: number
  lastError: string | undefined
}

const DEFAULT_RETRY_MS = 15_000
const DEFAULT_MAX_RETRY_MS = 5 * 60_000

export class TrackerSet implements PeerSource {
  private readonly entries: Entry[] = []
  private readonly log: Logger | undefined
  private readonly retryMs: number
  private readonly maxRetryMs: number
  private readonly now: () => number
  private readonly upGauge: Gauge | undefined
  private readonly failovers: Counter | undefined

  /** `trackers`: addresses (`host:port` or URLs) or clients; duplicates (same base URL) count once. */
  constructor(trackers: ReadonlyArray<string | TrackerLike>, opts: TrackerSetOptions = {}) {
    const clientOpts = {
      ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
      ...(opts.zone === undefined ? {} : { zone: opts.zone }),
    }
    for (const t of trackers) {
      const client = typeof t === 'string' ? new TrackerClient(t, clientOpts) : t
      if (this.entries.some((e) => e.url === client.baseUrl)) continue
      this.entries.push({ client, url: client.baseUrl, failures: 0, downUntil: 0, lastError: undefined })
    }
    if (this.entries.length === 0) throw new ShoalError('CONFIG_INVALID', 'at least one tracker is needed')
    this.log = opts.logger?.child({ component: 'trackers' })
    this.retryMs = opts.retryMs ?? DEFAULT_RETRY_MS
    this.maxRetryMs = Math.max(this.retryMs, opts.maxRetryMs ?? DEFAULT_MAX_RETRY_MS)
    this.now = opts.now ?? Date.now
    if (opts.registry) {
      this.upGauge = gauge(
        opts.registry,
        'shoal_tracker_client_up',
        '1 while the tracker answers, 0 while it is passed over after a failure',
        ['tracker'],
      )
      this.failovers = counter(
        opts.registry,
        'shoal_tracker_client_failovers_total',
        'Requests that failed on this tracker and moved on to the next one',
        ['tracker'],
      )
      for (const e of this.entries) this.upGauge.set({ tracker: e.url }, 1)
    }
  }

  /** The trackers' base URLs in the order they are asked for this key, ignoring health. */
  order(key: Uint8Array): string[] {
    return rendezvousOrder(this.entries, key, urlOf).map(urlOf)
  }

  health(): TrackerHealth[] {
    const now = this.now()
    return this.entries.map((e) => {
      const h: TrackerHealth = { url: e.url, up: e.downUntil <= now, failures: e.failures }
      if (e.downUntil > now) h.retryAt = e.downUntil
      if (e.lastError !== undefined) h.lastError = e.lastError
      return h
    })
  }

  announce(req: AnnounceRequest): Promise<AnnounceResponse> {
    return this.attempt(req.infoHash.toBuffer(), 'announce', req.signal, (c) => c.announce(req))
  }

  /** Metainfo by digest: the digest is the rendezvous key, so one tracker's cache serves it. */
  metainfo(ns: string, digest: Digest, signal?: AbortSignal): Promise<Buffer> {
    return this.attempt(Buffer.from(digest.hex, 'hex'), 'metainfo', signal, (c) =>
      c.metainfo(ns, digest, signal),
    )
  }

  /**
   * Reports a bad piece from the peer at `report.peer` to the tracker that serves the digest's
   * metainfo (the one that handed the origin out); see TrackerClient.reportCorrupt.
   */
  reportCorrupt(
    ns: string,
    digest: Digest,
    report: { peer: string; piece?: number },
    signal?: AbortSignal,
  ): Promise<VerifyResult> {
    return this.attempt(Buffer.from(digest.hex, 'hex'), 'corrupt report', signal, (c) => {
      if (!c.reportCorrupt) throw new ShoalError('UNAVAILABLE', `tracker ${c.baseUrl} takes no reports`)
      return c.reportCorrupt(ns, digest, report, signal)
    })
  }

  private async attempt<T>(
    key: Uint8Array,
    op: string,
    signal: AbortSignal | undefined,
    call: (client: TrackerLike) => Promise<T>,
  ): Promise<T> {
    const now = this.now()
    const ordered = rendezvousOrder(this.entries, key, urlOf)
    // Trackers passed over still come last: a request is refused only when every tracker failed.
    const candidates = ordered
      .filter((e) => e.downUntil <= now)
      .concat(ordered.filter((e) => e.downUntil > now))
    const problems: string[] = []
    let last: unknown
    for (const entry of candidates) {
      if (signal?.aborted) throw new ShoalError('ABORTED', `tracker ${op} aborted`, { cause: signal.reason })
      try {
        const out = await call(entry.client)
        this.markUp(entry)
        return out
      } catch (err) {
        if (!isTrackerFault(err)) {
          // It answered (a refusal, a not-found) or we were aborted: no reason to ask another.
          if (!signal?.aborted) this.markUp(entry)
          throw err
        }
        this.markDown(entry, err, op)
        problems.push(`${entry.url}: ${toShoalError(err).message}`)
        last = err
      }
    }
    if (candidates.length === 1) throw last
    throw new ShoalError('UNAVAILABLE', `no tracker answered the ${op} (${problems.join('; ')})`, {
      cause: last,
    })
  }

  private markUp(entry: Entry): void {
    if (entry.failures === 0) return
    this.log?.info({ tracker: entry.url, failures: entry.failures }, 'tracker answers again')
    entry.failures = 0
    entry.downUntil = 0
    entry.lastError = undefined
    this.upGauge?.set({ tracker: entry.url }, 1)
  }

  private markDown(entry: Entry, err: unknown, op: string): void {
    entry.failures++
    const pause = Math.min(this.maxRetryMs, this.retryMs * 2 ** Math.min(entry.failures - 1, 20))
    entry.downUntil = this.now() + pause
    entry.lastError = toShoalError(err).message
    this.upGauge?.set({ tracker: entry.url }, 0)
    this.failovers?.inc({ tracker: entry.url })
    const fields = { tracker: entry.url, op, failures: entry.failures, pauseMs: pause, err: entry.lastError }
    // Once per outage at warn; the retries of a tracker that stays down at debug.
    if (entry.failures === 1) this.log?.warn(fields, 'tracker failed; using the next one for a while')
    else this.log?.debug(fields, 'tracker still failing')
  }
}

function urlOf(e: { url: string }): string {
  return e.url
}
