/**
 * Write-back: committed blobs reach the backend in the background. An upload is acknowledged
 * once its blob is in the cache and its mark is durable (writeback-queue.ts); this worker then
 * writes pending blobs back, a few at a time, re-hashing the cached copy on the way out and
 * checking the size the backend holds afterwards, and deletes the mark only then. A failed
 * attempt is retried forever, 1 s doubling up to maxBackoff with jitter. A backend outage is
 * logged once (warn when it starts, info when the blobs it held back are written), not per try.
 */
import { createHash } from 'node:crypto'
import { type Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { NamespaceBackends } from '../../backend/router.js'
import type { Digest } from '../../core/index.js'
import { isShoalError, ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { type Counter, counter, liveGauge, type Registry } from '../../metrics/index.js'
import type { BlobStore } from '../../store/index.js'
import { blobKey } from './keys.js'
import { type Mark, type MarkStore, markKey } from './writeback-queue.js'

const BASE_BACKOFF_MS = 1000

interface Entry extends Mark {
  /** Not retried before this (ms since the epoch). */
  nextAt: number
  /** The attempt in progress: aborted by cancel() and stop(). */
  running?: { controller: AbortController; done: Promise<void> }
  cancelled?: boolean
  /** A problem of this blob alone (cache copy missing or corrupt) was logged already. */
  reported?: boolean
}

export interface WriteBackOptions {
  store: BlobStore
  /** The backend of each namespace (lib/backend/router.ts). */
  backends: NamespaceBackends
  marks: MarkStore
  log: Logger
  registry: Registry
  concurrency: number
  maxBackoffMs: number
}

export class WriteBack {
  private readonly entries = new Map<string, Entry>()
  private controller = new AbortController()
  private timer: NodeJS.Timeout | undefined
  private active = 0
  private stopped = true
  /** The backend has been failing since `since`; undefined while it works. */
  private outage: { since: number; failed: number; written: number } | undefined
  private readonly attempts: Counter

  constructor(private readonly opts: WriteBackOptions) {
    const { registry } = opts
    this.attempts = counter(
      registry,
      'shoal_origin_writeback_attempts_total',
      'Attempts to write a blob back to the backend, by result (written, failed)',
      ['result'],
    )
    const entries = this.entries
    liveGauge(
      registry,
      'shoal_origin_writeback_pending',
      'Blobs waiting to be written back',
      () => entries.size,
    )
    liveGauge(
      registry,
      'shoal_origin_writeback_oldest_seconds',
      'Age of the oldest blob waiting to be written back (0: none)',
      () => {
        let oldest = Number.POSITIVE_INFINITY
        for (const e of entries.values()) oldest = Math.min(oldest, e.queuedAt)
        return Number.isFinite(oldest) ? Math.max(0, (Date.now() - oldest) / 1000) : 0
      },
    )
  }

  /** Blobs waiting (all namespaces). */
  get pending(): number {
    return this.entries.size
  }

  /** Loads the marks a previous run left and starts writing them back. */
  async start(): Promise<void> {
    this.controller = new AbortController()
    this.entries.clear()
    const marks = await this.opts.marks.load()
    const now = Date.now()
    for (const m of marks) this.entries.set(markKey(m.ns, m.digest), { ...m, nextAt: now })
    this.stopped = false
    if (marks.length > 0) this.opts.log.info({ pending: marks.length }, 're-queued pending write-backs')
    this.schedule()
  }

  /** Aborts the writes in progress and waits for them; the marks stay for the next start. */
  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.controller.abort()
    await Promise.allSettled([...this.entries.values()].map((e) => e.running?.done))
  }

  /** True while the blob waits to be written back to `ns`, or to any namespace without `ns`. */
  has(digest: Digest, ns?: string): boolean {
    if (ns !== undefined) return this.entries.has(markKey(ns, digest))
    for (const e of this.entries.values()) if (e.digest.hex === digest.hex) return true
    return false
  }

  /**
   * Queues the cached blob for `ns`: resolves once its mark is durable (then the upload may be
   * acknowledged). Queuing a blob already waiting is a no-op.
   */
  async enqueue(ns: string, digest: Digest, size: number): Promise<void> {
    if (this.stopped) throw new ShoalError('ABORTED', 'the origin is stopping')
    const key = markKey(ns, digest)
    if (this.entries.has(key)) return
    const entry: Entry = { ns, digest, size, queuedAt: Date.now(), attempts: 0, nextAt: Date.now() }
    // In the map before the mark is on disk, so nothing evicts the blob meanwhile.
    this.entries.set(key, entry)
    try {
      await this.opts.marks.save(entry)
    } catch (err) {
      if (this.entries.get(key) === entry) this.entries.delete(key)
      throw err
    }
    this.schedule()
  }

  /**
   * Makes sure the cached blob reaches `ns`: nothing when it waits already or the backend holds
   * it whole, queued otherwise (also when the backend cannot be asked: a redundant write is harmless).
   */
  async ensure(ns: string, digest: Digest, size: number, signal?: AbortSignal): Promise<void> {
    if (this.entries.has(markKey(ns, digest))) return
    const stored = await this.opts.backends
      .for(ns)
      .stat(blobKey(ns, digest), signal)
      .catch(() => undefined)
    if (stored?.size === size) return
    await this.enqueue(ns, digest, size)
  }

  /** Drops the blob's write-back to `ns` (it is being deleted): a write in progress is aborted first. */
  async cancel(ns: string, digest: Digest): Promise<void> {
    const key = markKey(ns, digest)
    const entry = this.entries.get(key)
    if (entry) {
      entry.cancelled = true
      entry.running?.controller.abort()
      await entry.running?.done
      if (this.entries.get(key) === entry) this.entries.delete(key)
    }
    await this.opts.marks.remove(ns, digest)
  }

  /** Starts what is due, up to `concurrency`, and sets a timer for the next one due. */
  private schedule(): void {
    if (this.stopped) return
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    const now = Date.now()
    let next = Number.POSITIVE_INFINITY
    for (const entry of this.entries.values()) {
      if (entry.running) continue
      if (entry.nextAt <= now && this.active < this.opts.concurrency) this.run(entry)
      else next = Math.min(next, entry.nextAt)
    }
    if (Number.isFinite(next) && this.active < this.opts.concurrency) {
      this.timer = setTimeout(() => this.schedule(), Math.max(10, next - now))
      this.timer.unref()
    }
  }

  private run(entry: Entry): void {
    this.active++
    const controller = new AbortController()
    const stopping = this.controller.signal
    const abort = () => controller.abort()
    stopping.addEventListener('abort', abort, { once: true })
    const done = this.attempt(entry, controller.signal)
      .catch((err) => this.opts.log.error({ err }, 'write-back bookkeeping failed'))
      .finally(() => {
        stopping.removeEventListener('abort', abort)
        entry.running = undefined
        this.active--
        this.schedule()
      })
    entry.running = { controller, done }
  }

  private async attempt(entry: Entry, signal: AbortSignal): Promise<void> {
    const { ns, digest } = entry
    try {
      await this.write(entry, signal)
    } catch (err) {
      if (signal.aborted || entry.cancelled) return // stopping or deleted: the mark stays or goes with it
      entry.attempts++
      const delay = Math.min(this.opts.maxBackoffMs, BASE_BACKOFF_MS * 2 ** Math.min(entry.attempts - 1, 30))
      entry.nextAt = Date.now() + delay / 2 + (Math.random() * delay) / 2
      this.attempts.inc({ result: 'failed' })
      this.failed(entry, err)
      await this.opts.marks
        .save(entry)
        .catch((e) => this.opts.log.warn({ err: e }, 'cannot update a write-back mark'))
      return
    }
    this.attempts.inc({ result: 'written' })
    if (!entry.cancelled && this.entries.get(markKey(ns, digest)) === entry) {
      this.entries.delete(markKey(ns, digest))
      await this.opts.marks.remove(ns, digest)
    }
    this.opts.log.debug({ ns, digest: digest.toString(), size: entry.size }, 'blob written back')
    this.written()
  }

  /** Streams the cached blob to the backend, re-hashing it, then checks what the backend holds. */
  private async write(entry: Entry, signal: AbortSignal): Promise<void> {
    const { ns, digest, size } = entry
    const key = blobKey(ns, digest)
    let body: Readable
    try {
      body = this.opts.store.createReadStream(digest)
    } catch (err) {
      // The cache lost it (a corrupt copy dropped by the verifier): done if the backend has it whole.
      if (
        isShoalError(err, 'BLOB_NOT_FOUND') &&
        (await this.opts.backends.for(ns).stat(key, signal))?.size === size
      )
        return
      throw err
    }
    const hash = createHash('sha256')
    const checked = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk)
        done(null, chunk)
      },
      flush(done) {
        const actual = hash.digest('hex')
        if (actual === digest.hex) return done()
        done(
          new ShoalError('DIGEST_MISMATCH', `the cached copy of ${digest} hashes to sha256:${actual}`, {
            details: { expected: digest.toString(), actual: `sha256:${actual}` },
          }),
        )
      },
    })
    const feeding = pipeline(body, checked).catch(() => undefined) // its error reaches the put through `checked`
    try {
      await this.opts.backends.for(ns).put(key, checked, { size, signal })
    } finally {
      // A put that failed (or returned) without reading everything: close the file.
      if (!checked.readableEnded) checked.destroy()
      await feeding
    }
    const stored = await this.opts.backends.for(ns).stat(key, signal)
    if (stored?.size !== size) {
      throw new ShoalError(
        'BACKEND_ERROR',
        `the backend holds ${stored ? `${stored.size} bytes` : 'nothing'} at ${key} after writing ${size}`,
      )
    }
  }

  private failed(entry: Entry, err: unknown): void {
    const { log } = this.opts
    const e = toShoalError(err, 'BACKEND_ERROR')
    const where = { ns: entry.ns, digest: entry.digest.toString() }
    if (e.code === 'BLOB_NOT_FOUND' || e.code === 'DIGEST_MISMATCH') {
      // This blob's problem, not the backend's: its cached copy is gone or corrupt.
      if (!entry.reported) {
        entry.reported = true
        log.error(
          { ...where, code: e.code, err: e.message },
          'cannot write a blob back: its cached copy is missing or corrupt; push the file again (retried until then)',
        )
      }
      return
    }
    if (!this.outage) {
      this.outage = { since: Date.now(), failed: 0, written: 0 }
      log.warn(
        { ...where, code: e.code, err: e.message, pending: this.entries.size },
        'backend write-back failing: blobs are held in the cache and retried until it works',
      )
    }
    this.outage.failed++
  }

  private written(): void {
    const outage = this.outage
    if (!outage) return
    if (outage.written === 0) {
      // The backend works again: retry the others now rather than at the end of their backoff.
      for (const e of this.entries.values()) if (!e.reported) e.nextAt = Math.min(e.nextAt, Date.now())
    }
    outage.written++
    const stillFailing = [...this.entries.values()].some((e) => e.attempts > 0 && !e.reported)
    if (stillFailing) return
    this.outage = undefined
    this.opts.log.info(
      {
        written: outage.written,
        failedAttempts: outage.failed,
        outageSeconds: Math.round((Date.now() - outage.since) / 1000),
        pending: this.entries.size,
      },
      'backend write-back recovered',
    )
  }
}
