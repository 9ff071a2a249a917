/**
 * Blob GC (docs/architecture.md, "Blob lifecycle: remove and GC"). When a tag is removed (or
 * `latest` moves away from a digest), the digest becomes a candidate: a small JSON object
 * `gc/sha256/<hex>` { digest, ns, removedAt } in build-index's backend, so candidates survive a
 * restart. `graceMs` after the removal, a sweep decides:
 *
 *   - a tag refers to the digest again          → kept ("re-tagged"), candidate dropped
 *   - an origin saw a push of it since removedAt → kept ("re-pushed"), candidate dropped
 *   - otherwise every origin deletes it (cache, metainfo, seeding, its pending write-back and
 *     the backend's copy): DELETE ...?unlessPushedWithinMs=<time since the removal>, owners first, then the other
 *     configured origins → "deleted", candidate dropped
 *   - an origin cannot be reached, build-index cannot tell the tags → kept as a candidate and
 *     tried again at the next sweep: a blob is never deleted on the assumption that nothing uses it.
 *
 * The grace period is what lets a push racing with a remove keep its blob: the push commits on
 * the origin (remembered there, lib/origin/server/gc.ts) and puts its tag within it. Each origin
 * asks this build-index again whether tags refer to the digest, under its "being deleted" mark
 * (HEAD answers 404, so no tag put can slip in between), before it deletes anything.
 */

import type { Backend } from '../../backend/types.js'
import { type Clock, Repeat, systemClock } from '../../bandwidth/clock.js'
import { z } from '../../config/index.js'
import { Digest } from '../../core/index.js'
import { isShoalError } from '../../errors/index.js'
import type { EventRecorder } from '../../events/index.js'
import type { Logger } from '../../log/index.js'
import { type Counter, counter, type Gauge, gauge, type Registry } from '../../metrics/index.js'
import type { OriginCluster } from '../../origin/client/index.js'
import { KeyedMutex } from './mutex.js'
import { parseJsonWith, readSmall } from './refs.js'
import type { TagStore } from './tags.js'

export const GC_PREFIX = 'gc/sha256/'

const EntrySchema = z.object({ digest: z.string(), ns: z.string(), removedAt: z.number() })
export type GcEntry = z.infer<typeof EntrySchema>

export type GcDecision = 'deleted' | 'retagged' | 'repushed'

export interface BlobGcOptions {
  backend: Backend
  tags: TagStore
  origins: OriginCluster
  logger: Logger
  registry?: Registry
  graceMs: number
  sweepIntervalMs: number
  /** Epoch milliseconds (removedAt is persisted; only ages are sent to the origins). */
  now?: () => number
  /** Runs the sweeps (default: the system clock; its timers do not hold the process). */
  clock?: Clock
  /** The event log: one `gc` event per decision or failure (docs/events.md). */
  events?: EventRecorder
}

export class BlobGc {
  private readonly entries = new Map<string, GcEntry>()
  private readonly locks = new KeyedMutex()
  private readonly log: Logger
  private readonly now: () => number
  private readonly repeat: Repeat
  private stopping = new AbortController()
  private sweeping: Promise<void> | undefined
  private readonly pending: Gauge | undefined
  private readonly deleted: Counter | undefined
  private readonly kept: Counter | undefined
  private readonly failures: Counter | undefined

  constructor(private readonly opts: BlobGcOptions) {
    this.log = opts.logger.child({ component: 'build-index-gc' })
    this.now = opts.now ?? Date.now
    this.repeat = new Repeat(opts.clock ?? systemClock, opts.sweepIntervalMs, () => this.sweep())
    if (opts.registry) {
      this.pending = gauge(
        opts.registry,
        'shoal_build_index_gc_candidates',
        'Blobs waiting for GC (grace period running or delete to retry)',
      )
      this.deleted = counter(
        opts.registry,
        'shoal_build_index_gc_deleted_total',
        'Blobs deleted by GC from the origins and the backend',
      )
      this.kept = counter(opts.registry, 'shoal_build_index_gc_kept_total', 'GC candidates kept, by reason', [
        'reason',
      ])
      this.failures = counter(
        opts.registry,
        'shoal_build_index_gc_failures_total',
        'GC attempts that failed and will be retried',
      )
    }
  }

  /** Loads the candidates a previous run left, then sweeps every sweepIntervalMs. */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.stopping.signal.aborted) this.stopping = new AbortController()
    let after: string | undefined
    do {
      const page = await this.opts.backend.list(GC_PREFIX, { after, limit: 1000, signal })
      for (const key of page.keys) {
        const entry = await this.read(key, signal)
        if (entry) this.entries.set(Digest.parse(entry.digest).hex, entry)
      }
      after = page.next
    } while (after !== undefined)
    this.pending?.set(this.entries.size)
    if (this.entries.size > 0) this.log.info({ candidates: this.entries.size }, 'GC candidates loaded')
    this.repeat.start()
  }

  async stop(): Promise<void> {
    this.repeat.stop()
    this.stopping.abort()
    await this.sweeping
  }

  /** Candidates (tests, metrics). */
  get candidates(): readonly GcEntry[] {
    return [...this.entries.values()]
  }

  /**
   * The last tag of `digest` may have gone (or is about to: callers record before they delete,
   * so a crash between the two leaves a candidate, never a forgotten blob). A later removal
   * restarts the grace period.
   */
  async removed(digest: Digest, ns: string, signal?: AbortSignal): Promise<void> {
    await this.locks.run(digest.hex, async () => {
      const entry: GcEntry = { digest: digest.toString(), ns, removedAt: this.now() }
      const body = Buffer.from(JSON.stringify(entry))
      await this.opts.backend.put(GC_PREFIX + digest.hex, body, { size: body.length, signal })
      this.entries.set(digest.hex, entry)
      this.pending?.set(this.entries.size)
    })
  }

  /** Decides every candidate whose grace period is over; resolves when done (tests call it too). */
  sweep(): Promise<void> {
    if (!this.sweeping) {
      this.sweeping = this.sweepDue().finally(() => {
        this.sweeping = undefined
      })
    }
    return this.sweeping
  }

  private async sweepDue(): Promise<void> {
    const due = [...this.entries.values()]
      .filter((e) => e.removedAt + this.opts.graceMs <= this.now())
      .sort((a, b) => a.removedAt - b.removedAt)
    for (const entry of due) {
      if (this.stopping.signal.aborted) return
      const hex = Digest.parse(entry.digest).hex
      await this.locks.run(hex, async () => {
        // Re-recorded meanwhile: a new grace period runs.
        if (this.entries.get(hex) !== entry) return
        try {
          const decision = await this.decide(entry)
          await this.opts.backend.delete(GC_PREFIX + hex)
          this.entries.delete(hex)
          this.pending?.set(this.entries.size)
          if (decision === 'deleted') this.deleted?.inc()
          else this.kept?.inc({ reason: decision })
          const why = {
            deleted: 'blob deleted by GC',
            retagged: 'blob kept: re-tagged',
            repushed: 'blob kept: re-pushed',
          }
          this.log.info(
            { digest: entry.digest, ns: entry.ns, removedAt: new Date(entry.removedAt).toISOString() },
            why[decision],
          )
          this.opts.events?.record({
            action: 'gc',
            subject: entry.digest,
            digest: entry.digest,
            details: { ns: entry.ns, decision, removedAt: new Date(entry.removedAt).toISOString() },
          })
        } catch (err) {
          if (this.stopping.signal.aborted) return
          this.failures?.inc()
          this.log.warn(
            { err, digest: entry.digest, ns: entry.ns },
            'GC cannot decide or finish deleting a blob; it stays a candidate and is tried again at the next sweep',
          )
          this.opts.events?.record({
            action: 'gc',
            subject: entry.digest,
            digest: entry.digest,
            error: err,
            details: { ns: entry.ns },
          })
        }
      })
    }
  }

  private async decide(entry: GcEntry): Promise<GcDecision> {
    const signal = this.stopping.signal
    const digest = Digest.parse(entry.digest)
    if (await this.referenced(digest, signal)) return 'retagged'
    const { owners, others } = await this.opts.origins.ownersAndOthers(digest, signal)
    // One at a time, owners first; the first "re-pushed" stops it (that origin has queued the
    // blob's write-back again, in case an earlier one already deleted the backend's copy).
    for (const origin of [...owners, ...others]) {
      try {
        await origin.deleteBlob(entry.ns, digest, signal, {
          // An age, not a time: the origins' clocks need not agree with this one.
          unlessPushedWithinMs: this.now() - entry.removedAt,
        })
      } catch (err) {
        if (isShoalError(err, 'BLOB_RECOMMITTED')) return 'repushed'
        if (isShoalError(err, 'BLOB_IN_USE')) return 'retagged'
        throw err
      }
    }
    return 'deleted'
  }

  /** Whether a tag refers to `digest` (pages of stale pairs are looked past). */
  private async referenced(digest: Digest, signal: AbortSignal): Promise<boolean> {
    let after: string | undefined
    do {
      const page = await this.opts.tags.tagsOf(digest, { after, limit: 100, signal })
      if (page.tags.length > 0) return true
      after = page.next
    } while (after !== undefined)
    return false
  }

  private async read(key: string, signal?: AbortSignal): Promise<GcEntry | undefined> {
    const raw = await readSmall(this.opts.backend, key, signal, 4096, 'a GC candidate')
    if (raw === undefined) return undefined
    const entry = parseJsonWith(EntrySchema, raw)
    if (!entry || !Digest.isValid(entry.digest)) {
      // Never a reason to delete anything: logged and left for an operator.
      this.log.warn({ key }, 'GC candidate is not valid JSON; ignored (delete the object to silence this)')
      return undefined
    }
    return entry
  }
}
