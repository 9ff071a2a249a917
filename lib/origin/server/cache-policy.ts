/**
 * The origin cache's eviction. The backend is the durable copy; the cache keeps what is used.
 * Every sweep (sweepIntervalSeconds) evicts blobs idle (neither read over HTTP nor seeded) for
 * idleSeconds, and, above highWatermark, the least recently used ones until lowWatermark. It
 * never evicts a blob with a pending write-back (the backend does not have it yet), one being
 * read over HTTP, or one whose torrent is active (the engine read it within the seed file's
 * idle period). An evicted blob is fetched from the backend again when asked (backend-copy.ts).
 * Work per sweep is bounded: at most MAX_EVICTIONS blobs, from an in-memory index (no disk scan).
 */
import type { Digest } from '../../core/index.js'
import type { Logger } from '../../log/index.js'
import { type Counter, counter, liveGauge, type Registry } from '../../metrics/index.js'
import { bytesOverWatermark, evictLeastRecentlyUsed } from '../../store/eviction.js'
import type { BlobStore } from '../../store/index.js'
import type { Seeds } from './seeder.js'
import type { WriteBack } from './writeback.js'

/** Blobs evicted at most per sweep; the next sweep goes on. */
export const MAX_EVICTIONS = 256

export interface CachePolicyOptions {
  store: BlobStore
  seeds: Seeds
  writeBack: WriteBack
  /** Seeds the blob again (an eviction given up because it was asked for meanwhile). */
  reseed: (digest: Digest) => Promise<void>
  log: Logger
  registry: Registry
  /** 0: never evicted for idleness. */
  idleMs: number
  /** At most 1: the used share of the disk; above: bytes of cached blobs. */
  highWatermark: number
  lowWatermark: number
  sweepMs: number
}

interface Blob {
  digest: Digest
  size: number
  lastUsed: number
}

export class CachePolicy {
  private readonly blobs = new Map<string, Blob>()
  private readonly readers = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined
  private sweeping: Promise<number> | undefined
  private readonly evicted: Counter

  constructor(private readonly opts: CachePolicyOptions) {
    this.evicted = counter(
      opts.registry,
      'shoal_origin_cache_evicted_total',
      'Blobs evicted from the cache, by reason (idle, watermark)',
      ['reason'],
    )
    liveGauge(opts.registry, 'shoal_origin_cache_bytes', 'Bytes of blobs in the origin cache', () => {
      let sum = 0
      for (const b of this.blobs.values()) sum += b.size
      return sum
    })
  }

  /** Indexes the cached blobs (each as used now: a restart makes nothing idle) and starts sweeping. */
  async start(): Promise<void> {
    const { store } = this.opts
    this.blobs.clear()
    const now = Date.now()
    for await (const digest of store.list()) {
      const st = await store.stat(digest)
      if (st) this.blobs.set(digest.hex, { digest, size: st.size, lastUsed: now })
    }
    this.timer = setInterval(() => {
      void this.sweep().catch((err) => this.opts.log.warn({ err }, 'cache sweep failed'))
    }, this.opts.sweepMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    await this.sweeping?.catch(() => undefined)
  }

  /** A blob entered the cache (committed upload, backend fetch). */
  added(digest: Digest, size: number): void {
    this.blobs.set(digest.hex, { digest, size, lastUsed: Date.now() })
  }

  /** The blob left the cache (deleted). */
  forget(digest: Digest): void {
    this.blobs.delete(digest.hex)
  }

  /** A read of the blob over HTTP starts: not evicted until the returned function is called. */
  reading(digest: Digest): () => void {
    const hex = digest.hex
    this.readers.set(hex, (this.readers.get(hex) ?? 0) + 1)
    this.touch(digest)
    let released = false
    return () => {
      if (released) return
      released = true
      this.touch(digest)
      const n = (this.readers.get(hex) ?? 1) - 1
      if (n > 0) this.readers.set(hex, n)
      else this.readers.delete(hex)
    }
  }

  touch(digest: Digest): void {
    const blob = this.blobs.get(digest.hex)
    if (blob) blob.lastUsed = Date.now()
  }

  /** One sweep (one at a time); resolves with how many blobs it evicted. */
  sweep(): Promise<number> {
    this.sweeping ??= this.doSweep().finally(() => {
      this.sweeping = undefined
    })
    return this.sweeping
  }

  private protectedNow(blob: Blob): boolean {
    const { writeBack, seeds } = this.opts
    return (
      writeBack.has(blob.digest) || this.readers.has(blob.digest.hex) || seeds.activity(blob.digest).active
    )
  }

  private async doSweep(): Promise<number> {
    const { idleMs, log } = this.opts
    const now = Date.now()
    for (const blob of this.blobs.values()) {
      blob.lastUsed = Math.max(blob.lastUsed, this.opts.seeds.activity(blob.digest).lastReadAt)
    }
    const candidates = [...this.blobs.values()].filter((b) => !this.protectedNow(b))
    const { evicted, freed } = await evictLeastRecentlyUsed(candidates, {
      now,
      idleMs,
      toFree: await this.overWatermark(),
      max: MAX_EVICTIONS,
      evict: async (blob, reason) => {
        if (!(await this.evict(blob))) return false
        this.evicted.inc({ reason })
        return true
      },
    })
    if (evicted > 0) log.info({ evicted, freedBytes: freed, cached: this.blobs.size }, 'cache swept')
    return evicted
  }

  /** Bytes to free to get down to lowWatermark; 0 while at or under highWatermark. */
  private overWatermark(): Promise<number> {
    const { highWatermark: high, lowWatermark: low, store } = this.opts
    return bytesOverWatermark(store.root, high, low, () => {
      let bytes = 0
      for (const b of this.blobs.values()) bytes += b.size
      return bytes
    })
  }

  /** Evicts the blob unless it became protected meanwhile; true when it is gone. */
  private async evict(blob: Blob): Promise<boolean> {
    const { seeds, store, log } = this.opts
    const hex = blob.digest.hex
    if (this.protectedNow(blob) || this.blobs.get(hex) !== blob) return false
    this.blobs.delete(hex)
    await seeds.remove(blob.digest)
    // A read or a push of it may have started while the engine let go of it.
    if (this.readers.has(hex) || this.opts.writeBack.has(blob.digest)) {
      this.blobs.set(hex, blob)
      await this.opts.reseed(blob.digest).catch(() => undefined)
      return false
    }
    try {
      await store.delete(blob.digest)
    } catch (err) {
      log.warn({ err, digest: blob.digest.toString() }, 'cannot evict a blob')
      this.blobs.set(hex, blob)
      return false
    }
    log.debug({ digest: blob.digest.toString(), size: blob.size }, 'blob evicted from the cache')
    return true
  }
}
