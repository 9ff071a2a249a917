/**
 * Self-healing after a membership change (docs/architecture.md, "Replication and repair"): when
 * the ring's members or their health change (a member added or removed, statically or by DNS,
 * or passing its fail/pass threshold), this origin walks the blobs in its cache and makes every
 * current owner of each hold it (replication.ts ensure(): the owner answers whether it has it,
 * else copies it from here). A pass runs at most `blobsPerSecond`, `concurrency` blobs at a
 * time. Changes are coalesced: a pass starts `settleSeconds` after the first change of a burst,
 * and a change during a pass ends it and starts a new one (owners are computed anew anyway).
 * A pass that left replicas unplaced is run again after `retrySeconds`.
 *
 * Membership is watched by comparing the ring's members and health every WATCH_MS rather than
 * by hooks into the ring and the health checker: a change is noticed within half a second,
 * whichever way it came.
 */
import { type Clock, Repeat, systemClock } from '../../bandwidth/clock.js'
import { z } from '../../config/index.js'
import type { Digest } from '../../core/index.js'
import { isAbortError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { type Counter, counter, type Gauge, gauge, type Registry } from '../../metrics/index.js'
import type { BlobStore } from '../../store/index.js'
import { memberKey } from '../client/health.js'
import { type Replication, type RingView, sleep } from './replication.js'
import type { Work } from './work.js'

export const RepairConfig = z
  .strictObject({
    /** Blobs checked per second (each asks every other owner once). */
    blobsPerSecond: z.number().positive().max(100_000).default(50),
    /** Blobs checked (and copied) at once. */
    concurrency: z.number().int().min(1).max(64).default(4),
    /** A pass starts this long after the first membership change of a burst. Seconds. */
    settleSeconds: z.number().min(0).max(3_600).default(2),
    /** A pass that left replicas unplaced runs again after this; 0 = at the next change only. Seconds. */
    retrySeconds: z.number().int().min(0).max(86_400).default(60),
  })
  .prefault({})

export type RepairSettings = z.infer<typeof RepairConfig>

const WATCH_MS = 500

export class Repair {
  private readonly watching: Repeat
  private readonly pending: Gauge
  private readonly copied: Counter
  private readonly failed: Counter
  private readonly checked: Counter
  private readonly passes: Counter
  private seen = ''
  private dirty = false
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private stopped = true

  constructor(
    private readonly opts: {
      ring: RingView
      /** Changes whenever the members or their health do. */
      signature: () => string
      store: BlobStore
      replication: Replication
      work: Work
      log: Logger
      registry: Registry
      settings: RepairSettings
      clock?: Clock
    },
  ) {
    const { registry } = opts
    this.watching = new Repeat(opts.clock ?? systemClock, WATCH_MS, async () => this.watch())
    this.pending = gauge(
      registry,
      'shoal_origin_repair_pending',
      'Blobs left to check in the repair pass running (0: none)',
    )
    this.copied = counter(
      registry,
      'shoal_origin_repair_copied_total',
      'Replicas placed on owners that lacked them by repair',
    )
    this.failed = counter(
      registry,
      'shoal_origin_repair_failed_total',
      'Replicas repair could not place (tried again later)',
    )
    this.checked = counter(registry, 'shoal_origin_repair_checked_total', 'Blobs whose owners repair checked')
    this.passes = counter(registry, 'shoal_origin_repair_passes_total', 'Repair passes, by how they ended', [
      'result',
    ])
    this.pending.set(0)
  }

  /** Takes the ring as it is now as the baseline and watches it for changes. */
  start(): void {
    this.stopped = false
    this.seen = this.opts.signature()
    this.watching.start()
  }

  /** Stops watching; a pass in progress ends at its next blob (work.signal aborts the copies). */
  async stop(): Promise<void> {
    this.stopped = true
    this.watching.stop()
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    await this.running
  }

  /** Asks for a pass (coalesced with any pending or running one); also what a change does. */
  trigger(reason: string): void {
    if (this.stopped) return
    this.dirty = true
    if (this.running || this.timer) return
    this.opts.log.info({ reason, settleSeconds: this.opts.settings.settleSeconds }, 'repair pass scheduled')
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.run()
    }, this.opts.settings.settleSeconds * 1000)
    this.timer.unref()
  }

  /** Resolves once no pass is running or scheduled (tests, benchmarks). */
  async idle(): Promise<void> {
    // Not sleep(): its timer is unref'd, and a caller waiting here wants the process kept alive.
    while (this.running || this.timer) await (this.running ?? new Promise((r) => setTimeout(r, 20)))
  }

  private async watch(): Promise<void> {
    const now = this.opts.signature()
    if (now === this.seen) return
    this.seen = now
    this.trigger('ring membership or health changed')
  }

  private run(): void {
    let unplaced = 0
    this.running = (async () => {
      while (this.dirty && !this.stopped && !this.opts.work.signal.aborted) {
        this.dirty = false
        unplaced = await this.pass()
      }
    })()
      .catch((err) => this.opts.log.error({ err }, 'repair pass failed'))
      .finally(() => {
        this.running = undefined
        this.pending.set(0)
        const retry = this.opts.settings.retrySeconds
        if (this.dirty) this.trigger('changed during the pass')
        else if (unplaced > 0 && retry > 0 && !this.stopped) {
          this.timer = setTimeout(() => {
            this.timer = undefined
            this.trigger(`${unplaced} replicas left unplaced`)
          }, retry * 1000)
          this.timer.unref()
        }
      })
  }

  /** One walk over the cache; resolves with the replicas it could not place. */
  private async pass(): Promise<number> {
    const { store, log, settings, work } = this.opts
    // A ring of one (the embedded default): no other owner to check.
    if (this.opts.ring.members().length <= 1) return 0
    const digests: Digest[] = []
    for await (const d of store.list()) digests.push(d)
    this.pending.set(digests.length)
    const started = Date.now()
    const tally = { copied: 0, failed: 0, checked: 0 }
    let next = 0
    const interval = 1000 / settings.blobsPerSecond
    let slot = started - interval
    // Blobs whose only owner is this origin cost nothing but a stat: only the others take a
    // slot of the rate (ask an owner, perhaps copy).
    const pace = async () => {
      slot = Math.max(Date.now(), slot + interval)
      const due = slot - Date.now()
      if (due > 0) await sleep(due, work.signal)
    }
    const worker = async () => {
      // A change during the pass (dirty) ends it: the next pass checks every blob again.
      while (next < digests.length && !this.dirty && !this.stopped && !work.signal.aborted) {
        await this.check(digests[next++] as Digest, tally, pace)
        this.pending.dec()
      }
    }
    try {
      await Promise.all(Array.from({ length: settings.concurrency }, worker))
    } catch (err) {
      if (!isAbortError(err)) throw err
    }
    const result = work.signal.aborted || this.stopped ? 'stopped' : this.dirty ? 'restarted' : 'done'
    this.passes.inc({ result })
    const ms = Date.now() - started
    log.info({ result, blobs: digests.length, ...tally, ms }, 'repair pass ended')
    return tally.failed
  }

  private async check(
    digest: Digest,
    tally: { copied: number; failed: number; checked: number },
    pace: () => Promise<void>,
  ) {
    const { ring, store, replication } = this.opts
    // Evicted since the listing: the backend has it, owners fetch it when asked.
    if (!(await store.stat(digest))) return
    const self = memberKey(ring.self())
    const others = ring.owners(digest).filter((o) => memberKey(o) !== self)
    if (others.length > 0) {
      await pace()
      const ns = await replication.namespaceOf(digest)
      const results = await Promise.all(others.map((o) => replication.ensure(o, ns, digest, 'repair')))
      if (this.opts.work.signal.aborted) return
      for (const r of results) {
        if (r === 'copied') {
          tally.copied++
          this.copied.inc()
        } else if (r === 'failed') {
          tally.failed++
          this.failed.inc()
        }
      }
    }
    tally.checked++
    this.checked.inc()
  }
}
