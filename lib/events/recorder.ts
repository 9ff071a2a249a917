/**
 * EventRecorder: how a daemon records what happened (docs/events.md). `record()` returns at
 * once and never throws: the push, tag put or GC it describes must never wait for, or fail
 * because of, the event log. Every event is logged at info; the queued recorders also write it
 * to a resource store, in the background, from a bounded queue:
 *
 * - a write that fails keeps the event at the head of the queue and is tried again after a
 *   backoff (the name is fixed at record time, so a retry of a write whose answer was lost finds
 *   ALREADY_EXISTS and counts as written: no duplicates);
 * - when the queue is full (the store is down or slower than the events) new events are dropped,
 *   counted in `shoal_events_total{result="dropped"}`, and logged once per burst (the first drop,
 *   then the count when the queue drains), never once per event;
 * - stop() flushes for up to `flushMs`, then drops (and counts) what is left.
 */
import { hostname } from 'node:os'
import { isShoalError, toShoalError } from '../errors/index.js'
import { Lifecycle, type Service } from '../lifecycle/index.js'
import type { Logger } from '../log/index.js'
import { type Counter, counter, liveGauge, type Registry } from '../metrics/index.js'
import { type EventSpecT, eventName, MAX_DETAILS_BYTES } from './kind.js'

export interface EventInput {
  action: string
  /** What it happened to (a tag, a digest, a job name). */
  subject: string
  /** Default: 'ok', or 'failed' when `error` is set. */
  outcome?: 'ok' | 'failed'
  /** Default: the recorder's service name. */
  actor?: string
  /** A failure: a ShoalError (its code and message are kept) or any thrown value. */
  error?: unknown
  details?: Record<string, unknown>
  tag?: string
  digest?: string
  job?: string
  /** Default: now. */
  time?: Date
}

export interface EventRecorder {
  /** Records an event: returns at once, never throws. */
  record(event: EventInput): void
}

/** Where a queued recorder writes one event (a store in-process, or an apiserver over HTTP). */
export interface EventSink {
  readonly describe: string
  /** Called by the recorder's start (e.g. to read a token file); a throw fails the start. */
  open?(): Promise<void>
  write(name: string, spec: EventSpecT): Promise<void>
}

export interface RecorderOptions {
  logger: Logger
  /** The actor of events that name none (a service: 'proxy', 'build-index', 'job-controller'). */
  service?: string
  /** The `host` of every event (default: the OS host name). */
  host?: string
  registry?: Registry
  /** Events waiting to be written at most; more are dropped. */
  maxQueued?: number
  /** Events written at once (the file store commits concurrent writes with one fsync). */
  maxInFlight?: number
  /** First pause after a failed write; doubles up to maxRetryMs. */
  retryMs?: number
  maxRetryMs?: number
  /** How long stop() keeps writing what is queued. */
  flushMs?: number
}

const MAX_TEXT = 4096

/** The spec of an event: defaults filled in, strings and details cut to the kind's bounds. */
export function eventSpec(input: EventInput, defaults: { actor: string; host: string }): EventSpecT {
  const err = input.error === undefined ? undefined : toShoalError(input.error)
  const spec: EventSpecT = {
    time: (input.time ?? new Date()).toISOString(),
    actor: cut(input.actor || defaults.actor, 256),
    host: cut(defaults.host, 256),
    action: input.action,
    subject: cut(input.subject || '-', MAX_TEXT),
    outcome: input.outcome ?? (err ? 'failed' : 'ok'),
    details: boundedDetails(input.details ?? {}),
  }
  if (err) spec.error = cut(`${err.code}: ${err.message}`, 2048)
  if (input.tag) spec.tag = cut(input.tag, MAX_TEXT)
  if (input.digest) spec.digest = cut(input.digest, 200)
  if (input.job) spec.job = cut(input.job, 253)
  return spec
}

function cut(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`
}

/** Details that fit the kind's bound; otherwise a note saying they did not (never a rejected event). */
function boundedDetails(details: Record<string, unknown>): Record<string, unknown> {
  const keys = Object.keys(details)
  let json: string
  try {
    json = JSON.stringify(details)
  } catch {
    return { omitted: 'details are not JSON' }
  }
  if (keys.length <= 32 && json.length <= MAX_DETAILS_BYTES) return JSON.parse(json)
  return { omitted: `details too large (${keys.length} keys, ${json.length} bytes)` }
}

/** Logs each event at info and stores nothing: standalone daemons with no apiserver configured. */
export class LogEventRecorder implements EventRecorder {
  private readonly log: Logger
  private readonly defaults: { actor: string; host: string }

  constructor(opts: { logger: Logger; service?: string; host?: string }) {
    this.log = opts.logger.child({ component: 'events' })
    this.defaults = { actor: opts.service ?? 'shoal', host: opts.host ?? hostname() }
  }

  record(input: EventInput): void {
    try {
      const spec = eventSpec(input, this.defaults)
      this.log.info({ event: spec }, `event ${spec.action} ${spec.outcome}`)
    } catch {}
  }
}

/** A recorder that also names each event's actor after one service (shares the queue). */
export function forService(recorder: EventRecorder, service: string): EventRecorder {
  return { record: (e) => recorder.record({ ...e, actor: e.actor || service }) }
}

interface Queued {
  name: string
  spec: EventSpecT
}

export class QueuedEventRecorder implements EventRecorder, Service {
  private readonly log: Logger
  private readonly defaults: { actor: string; host: string }
  private readonly queue: Queued[] = []
  private readonly maxQueued: number
  private readonly maxInFlight: number
  private readonly results: Counter | undefined
  private readonly stopping = new AbortController()
  private wake: (() => void) | undefined
  private loop: Promise<void> | undefined
  private closed = false
  /** Drops since the last "dropped" log line (a burst), and whether that line was written. */
  private burst = 0
  private failing = false
  readonly counts = { written: 0, dropped: 0 }
  private readonly life = new Lifecycle('event recorder', {
    start: async () => {
      await this.sink.open?.()
      this.loop = this.run()
    },
    stop: () => this.shutdown(),
  })

  constructor(
    private readonly sink: EventSink,
    private readonly opts: RecorderOptions,
  ) {
    this.log = opts.logger.child({ component: 'events' })
    this.defaults = { actor: opts.service ?? 'shoal', host: opts.host ?? hostname() }
    this.maxQueued = opts.maxQueued ?? 1000
    this.maxInFlight = opts.maxInFlight ?? 8
    if (opts.registry) {
      this.results = counter(
        opts.registry,
        'shoal_events_total',
        'Events recorded, by result: written to the event log, or dropped (queue full or stopped)',
        ['result'],
      )
      liveGauge(opts.registry, 'shoal_events_queued', 'Events waiting to be written', () => this.queue.length)
    }
  }

  get queued(): number {
    return this.queue.length
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal)
  }

  stop(): Promise<void> {
    return this.life.stop()
  }

  record(input: EventInput): void {
    try {
      const spec = eventSpec(input, this.defaults)
      this.log.info({ event: spec }, `event ${spec.action} ${spec.outcome}`)
      if (this.closed || this.queue.length >= this.maxQueued) {
        this.dropped(1, this.closed ? 'the recorder is stopped' : 'the queue is full')
        return
      }
      this.queue.push({ name: eventName(new Date(spec.time)), spec })
      this.wake?.()
    } catch (err) {
      // Never the caller's problem; an event that cannot even be built is a bug worth one line.
      this.log.error({ err }, 'cannot record an event')
    }
  }

  private dropped(n: number, why: string): void {
    this.counts.dropped += n
    this.results?.inc({ result: 'dropped' }, n)
    if (this.burst === 0)
      this.log.warn(
        { sink: this.sink.describe, queued: this.queue.length },
        `events dropped: ${why}; counting until the queue drains`,
      )
    this.burst += n
  }

  /** Writes the head of the queue, up to maxInFlight at once, until stopped. */
  private async run(): Promise<void> {
    const signal = this.stopping.signal
    let pauseMs = this.opts.retryMs ?? 200
    while (!signal.aborted) {
      if (this.queue.length === 0) {
        this.endBurst()
        // The listener is removed again: this wait happens once per idle spell, for days.
        let onAbort: (() => void) | undefined
        await new Promise<void>((r) => {
          this.wake = r
          onAbort = () => r()
          signal.addEventListener('abort', onAbort, { once: true })
        })
        if (onAbort) signal.removeEventListener('abort', onAbort)
        this.wake = undefined
        continue
      }
      const batch = this.queue.slice(0, this.maxInFlight)
      const results = await Promise.allSettled(batch.map((e) => this.writeOne(e)))
      const done = new Set(batch.filter((_, i) => results[i]?.status === 'fulfilled'))
      for (let i = this.queue.length - 1; i >= 0 && done.size > 0; i--)
        if (done.has(this.queue[i] as Queued)) this.queue.splice(i, 1)
      const written = results.filter((r) => r.status === 'fulfilled' && r.value).length
      this.counts.written += written
      if (written > 0) this.results?.inc({ result: 'written' }, written)
      const failure = results.find((r) => r.status === 'rejected')
      if (!failure) {
        if (this.failing) this.log.info({ sink: this.sink.describe }, 'event log writes work again')
        this.failing = false
        pauseMs = this.opts.retryMs ?? 200
        continue
      }
      if (!this.failing)
        this.log.warn(
          { err: toShoalError(failure.reason), sink: this.sink.describe, queued: this.queue.length },
          'cannot write events; they stay queued and are tried again',
        )
      this.failing = true
      await pause(pauseMs, signal)
      pauseMs = Math.min(pauseMs * 2, this.opts.maxRetryMs ?? 5000)
    }
  }

  /** True: written; false: refused for good (dropped); a throw: try again later. */
  private async writeOne(e: Queued): Promise<boolean> {
    try {
      await this.sink.write(e.name, e.spec)
      return true
    } catch (err) {
      // Written before, the answer lost: the name is the event's identity.
      if (isShoalError(err, 'ALREADY_EXISTS')) return true
      // Refused as such: trying again cannot help, and it must not hold up the queue behind it.
      if (
        isShoalError(err, 'INVALID') ||
        isShoalError(err, 'BAD_REQUEST') ||
        isShoalError(err, 'PAYLOAD_TOO_LARGE')
      ) {
        this.log.warn({ err, event: e.spec }, 'the event log refused an event; dropped')
        this.dropped(1, 'refused by the event log')
        return false
      }
      throw err
    }
  }

  private endBurst(): void {
    if (this.burst === 0) return
    this.log.warn({ sink: this.sink.describe, dropped: this.burst }, 'events were dropped (burst over)')
    this.burst = 0
  }

  private async shutdown(): Promise<void> {
    this.closed = true
    const flushMs = this.opts.flushMs ?? 2000
    const deadline = Date.now() + flushMs
    while (this.queue.length > 0 && !this.failing && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10))
    this.stopping.abort()
    await this.loop
    if (this.queue.length > 0) this.dropped(this.queue.splice(0).length, 'the recorder stopped')
    this.endBurst()
  }
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}
