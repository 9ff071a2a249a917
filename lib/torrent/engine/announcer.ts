/**
 * The announce loop of one torrent: 'started' at once, then again at the tracker's interval
 * (clamped), sooner while downloading and short of peers, 'completed' when done and 'stopped'
 * on removal. Failures are logged and retried with backoff; they are never fatal, because the
 * peers we already have keep working without the tracker.
 */
import type { InfoHash } from '../../core/index.js'
import { isAbortError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { type AnnouncePeer, type AnnounceRequest, DEFAULTS, type PeerSource } from '../types.js'

export interface AnnounceTarget {
  readonly infoHash: InfoHash
  counters(): { uploaded: number; downloaded: number; left: number }
  /** Downloading and short of peers: re-announce soon. */
  hungry(): boolean
  onPeers(peers: AnnouncePeer[]): void
}

export interface AnnouncerOptions {
  source: PeerSource
  peerId: Buffer
  port: () => number
  numwant: number
  logger: Logger
}

type Event = NonNullable<AnnounceRequest['event']>

export class Announcer {
  private readonly target: AnnounceTarget
  private readonly opts: AnnouncerOptions
  private timer: NodeJS.Timeout | undefined
  private inFlight: AbortController | undefined
  /** An event to send as soon as the announce in flight returns (or to retry after a failure). */
  private pendingEvent: Event | undefined
  private intervalMs: number = DEFAULTS.minAnnounceMs
  private failures = 0
  private started = false
  private stopped = false

  constructor(target: AnnounceTarget, opts: AnnouncerOptions) {
    this.target = target
    this.opts = opts
  }

  start(): void {
    if (this.started || this.stopped) return
    this.started = true
    this.trigger('started')
  }

  completed(): void {
    if (this.stopped) return
    this.trigger('completed')
  }

  /** Announce now: new peers are welcome (e.g. a download began on a seeding torrent). */
  refresh(): void {
    if (this.stopped || !this.started || this.inFlight) return
    this.trigger(undefined)
  }

  /** Sends 'stopped' best-effort (bounded wait); never rejects. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.inFlight?.abort()
    if (!this.started) return
    const ms = DEFAULTS.stoppedAnnounceTimeoutMs
    let timer: NodeJS.Timeout | undefined
    // The race bounds stop() even for a PeerSource that ignores its signal.
    const giveUp = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms + 100)
      timer.unref()
    })
    const send = this.opts.source.announce(this.request('stopped', AbortSignal.timeout(ms))).then(
      () => undefined,
      (err: unknown) =>
        this.opts.logger.debug({ err, infoHash: this.target.infoHash.hex }, 'stopped announce failed'),
    )
    await Promise.race([send, giveUp])
    clearTimeout(timer)
  }

  private trigger(event: Event | undefined): void {
    if (this.inFlight) {
      if (event !== undefined) this.pendingEvent = event
      return
    }
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    void this.run(event)
  }

  private request(event: Event | undefined, signal: AbortSignal): AnnounceRequest {
    const c = this.target.counters()
    const req: AnnounceRequest = {
      infoHash: this.target.infoHash,
      peerId: this.opts.peerId,
      port: this.opts.port(),
      uploaded: c.uploaded,
      downloaded: c.downloaded,
      left: c.left,
      numwant: this.opts.numwant,
      signal,
    }
    if (event !== undefined) req.event = event
    return req
  }

  private async run(event: Event | undefined): Promise<void> {
    const ac = new AbortController()
    this.inFlight = ac
    let delay: number
    try {
      const res = await this.opts.source.announce(this.request(event, ac.signal))
      if (this.stopped) return
      this.failures = 0
      const interval = Number.isFinite(res.interval) ? res.interval * 1000 : DEFAULTS.minAnnounceMs
      this.intervalMs = Math.min(DEFAULTS.maxAnnounceMs, Math.max(DEFAULTS.minAnnounceMs, interval))
      this.target.onPeers(Array.isArray(res.peers) ? res.peers : [])
      delay = this.intervalMs
    } catch (err) {
      if (this.stopped) return
      this.failures++
      // Keep 'started'/'completed' so the tracker eventually hears them.
      if (event !== undefined && this.pendingEvent === undefined) this.pendingEvent = event
      delay = Math.min(60_000, 1000 * 2 ** Math.min(this.failures, 6))
      // A tracker's rate limit says when to come back (Retry-After); a host seeding thousands of
      // blobs meets it after a restart, so it is expected, not worth a warning per torrent.
      const limited = (err as { code?: unknown }).code === 'TOO_MANY_REQUESTS'
      const retryAfter = Number(
        (err as { details?: { retryAfterSeconds?: unknown } }).details?.retryAfterSeconds,
      )
      if (Number.isFinite(retryAfter) && retryAfter > 0)
        delay = Math.max(delay, Math.min(retryAfter, 300) * 1000)
      const log = this.opts.logger
      const fields = { err, infoHash: this.target.infoHash.hex, failures: this.failures, retryMs: delay }
      if (isAbortError(err) || limited)
        log.debug(fields, limited ? 'announce rate limited' : 'announce aborted')
      else log.warn(fields, 'announce failed; will retry')
    } finally {
      if (this.inFlight === ac) this.inFlight = undefined
    }
    if (this.stopped) return
    if (this.failures === 0 && this.pendingEvent !== undefined) {
      const next = this.pendingEvent
      this.pendingEvent = undefined
      void this.run(next)
      return
    }
    if (this.target.hungry()) delay = Math.min(delay, DEFAULTS.hungryAnnounceMs)
    this.schedule(delay)
  }

  private schedule(delay: number): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = setTimeout(this.onTimer, delay)
    this.timer.unref()
  }

  private readonly onTimer = (): void => {
    this.timer = undefined
    const event = this.pendingEvent
    this.pendingEvent = undefined
    void this.run(event)
  }
}
