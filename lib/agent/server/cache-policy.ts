/**
 * The agent cache's lifecycle: which cached blobs go, and when.
 *
 * Every sweep (sweepIntervalSeconds, on a Clock's Repeat) removes the blobs unused for
 * ttlSeconds and, above highWatermark, the least recently used ones until lowWatermark (the
 * rule shared with the origin: lib/store/eviction.ts). Use is: the download that put the blob
 * in the cache, a local client reading it (a pull streaming it to its destination), and bytes
 * the engine uploaded to peers (its torrent's upload count grew since the previous look).
 *
 * Never removed under a reader: a blob being streamed to a client, or whose torrent uploaded
 * since the previous sweep, is skipped by the sweep, and a read that starts while an eviction is
 * under way makes the eviction give up (the blob is seeded again). Downloads in progress are not
 * in the cache (store/downloads/), so a sweep never touches them. An evicted blob stops being
 * seeded (Downloads.release: the engine drops its torrent, the file is closed) before its file
 * is deleted; a later pull fetches it through the swarm again.
 *
 * Last use survives a restart: it is the cache file's mtime, set with utimes when a use is
 * recorded (at most once per PERSIST_EVERY_MS per blob, and for every blob at stop), and read
 * back at start. So a restart neither makes every blob fresh nor every blob stale.
 *
 * DELETE /blobs/:digest goes through here too (remove()), so an eviction and a delete of the
 * same blob never race: it is refused with BLOB_IN_USE (409) while a client reads the blob,
 * cancels a download in progress, and succeeds (204) whether or not the blob was there.
 */
import { stat, utimes } from 'node:fs/promises'
import { type Clock, Repeat, systemClock } from '../../bandwidth/clock.js'
import { type Digest, MetaInfo } from '../../core/index.js'
import { errnoCode, ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { type Counter, counter, liveGauge, type Registry } from '../../metrics/index.js'
import { bytesOverWatermark, evictLeastRecentlyUsed } from '../../store/eviction.js'
import type { BlobStore } from '../../store/index.js'
import type { Downloads } from './downloads.js'

/** Blobs evicted at most per sweep; the next sweep goes on. */
export const MAX_EVICTIONS = 256
/** A use is written to the file's mtime at most this often per blob (a restart loses at most this). */
export const PERSIST_EVERY_MS = 60_000

export interface AgentCacheOptions {
  store: BlobStore
  downloads: Pick<Downloads, 'release' | 'reseed' | 'bytesUploaded'>
  log: Logger
  registry: Registry
  /** 0: never removed for age. */
  ttlMs: number
  /** At most 1: the used share of the disk; above: bytes of cached blobs. */
  highWatermark: number
  lowWatermark: number
  sweepMs: number
  /** Runs the sweeps (tests: a ManualClock). */
  clock?: Clock
  /** Wall-clock ms since the epoch, for last-use times (they are file mtimes). */
  now?: () => number
}

interface Blob {
  digest: Digest
  size: number
  lastUsed: number
  /** The lastUsed last written to the file's mtime. */
  persisted: number
  /** The torrent's upload count at the last look. */
  uploaded: number
}

export class AgentCachePolicy {
  private readonly blobs = new Map<string, Blob>()
  /** Clients streaming each blob, by hex. */
  private readonly readers = new Map<string, number>()
  /** Removals under way (evictions and deletes), by hex: true once the blob is gone. */
  private readonly removing = new Map<string, Promise<boolean>>()
  private readonly repeat: Repeat
  private readonly now: () => number
  private sweeping: Promise<number> | undefined
  private readonly evicted: Counter

  constructor(private readonly opts: AgentCacheOptions) {
    this.now = opts.now ?? Date.now
    this.repeat = new Repeat(opts.clock ?? systemClock, opts.sweepMs, () =>
      this.sweep().catch((err) =>
        opts.log.warn({ err: toShoalError(err).message }, 'agent cache sweep failed'),
      ),
    )
    this.evicted = counter(
      opts.registry,
      'shoal_agent_cache_evicted_total',
      'Blobs removed from the agent cache by the sweep, by reason (idle: past the TTL, watermark)',
      ['reason'],
    )
    liveGauge(opts.registry, 'shoal_agent_cache_bytes', 'Bytes of verified blobs in the agent cache', () =>
      this.cachedBytes(),
    )
  }

  /** Indexes the cached blobs with their last use (the files' mtimes) and starts sweeping. */
  async start(): Promise<void> {
    const { store } = this.opts
    this.blobs.clear()
    for await (const digest of store.list()) {
      try {
        const st = await stat(store.blobPath(digest))
        const lastUsed = Math.floor(st.mtimeMs)
        this.blobs.set(digest.hex, { digest, size: st.size, lastUsed, persisted: lastUsed, uploaded: 0 })
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err
      }
    }
    this.repeat.start()
  }

  /** Stops sweeping, waits for a sweep under way, and writes every use not yet on disk. */
  async stop(): Promise<void> {
    this.repeat.stop()
    await this.sweeping?.catch(() => undefined)
    await Promise.all([...this.removing.values()].map((p) => p.catch(() => undefined)))
    await Promise.all(
      [...this.blobs.values()].filter((b) => b.lastUsed > b.persisted).map((b) => this.persist(b)),
    )
  }

  /** How many cached blobs are indexed (tests, logs). */
  get size(): number {
    return this.blobs.size
  }

  /** Last use of a cached blob, ms since the epoch; undefined when it is not in the cache. */
  lastUsed(digest: Digest): number | undefined {
    return this.blobs.get(digest.hex)?.lastUsed
  }

  /** A verified blob entered the cache (a download finished): used now. */
  added(digest: Digest, size: number): void {
    const blob: Blob = { digest, size, lastUsed: this.now(), persisted: 0, uploaded: 0 }
    this.blobs.set(digest.hex, blob)
    void this.persist(blob)
  }

  /**
   * A client starts reading the cached blob: it is not removed until the returned function is
   * called (idempotent). Call it right after the blob was found in the cache, then wait for
   * removal() before opening the file.
   */
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

  /**
   * The removal of the blob under way, if any: resolves true when it went (the reader must get
   * it again), false when the eviction gave up (the blob stays).
   */
  removal(digest: Digest): Promise<boolean> | undefined {
    return this.removing.get(digest.hex)
  }

  /** Records a use now (persisted to the file's mtime at most every PERSIST_EVERY_MS). */
  touch(digest: Digest): void {
    const blob = this.blobs.get(digest.hex)
    if (!blob) return
    blob.lastUsed = Math.max(blob.lastUsed, this.now())
    if (blob.lastUsed - blob.persisted >= PERSIST_EVERY_MS) void this.persist(blob)
  }

  /**
   * DELETE /blobs/:digest: stops seeding it, cancels its download if one runs, deletes it and
   * any partial download. Absent is fine (idempotent). BLOB_IN_USE while a client reads it.
   */
  async remove(digest: Digest): Promise<{ partialBytes: number }> {
    const hex = digest.hex
    // An eviction or another delete of it first; then this one (it may have nothing left to do).
    await this.removing.get(hex)?.catch(() => undefined)
    const readers = this.readers.get(hex) ?? 0
    if (readers > 0)
      throw new ShoalError(
        'BLOB_IN_USE',
        `blob ${digest} is being read by ${readers} client(s) of this agent and was not deleted; ` +
          'delete it again once they have finished',
        { details: { readers } },
      )
    let partialBytes = 0
    const run = (async () => {
      const blob = this.blobs.get(hex)
      this.blobs.delete(hex)
      partialBytes = await this.opts.downloads.release(digest, await this.metaInfo(digest))
      try {
        await this.opts.store.delete(digest)
      } catch (err) {
        if (blob) this.blobs.set(hex, blob)
        throw err
      }
      return true
    })()
    this.removing.set(hex, run)
    try {
      await run
    } finally {
      if (this.removing.get(hex) === run) this.removing.delete(hex)
    }
    return { partialBytes }
  }

  /** One sweep (one at a time); resolves with how many blobs it removed. */
  sweep(): Promise<number> {
    this.sweeping ??= this.doSweep().finally(() => {
      this.sweeping = undefined
    })
    return this.sweeping
  }

  private async doSweep(): Promise<number> {
    const now = this.now()
    const serving = new Set<string>()
    for (const blob of this.blobs.values()) {
      const up = this.opts.downloads.bytesUploaded(blob.digest)
      if (up === undefined) continue
      if (up > blob.uploaded) {
        // Served to peers since the last look: a use, and maybe an upload still going on.
        serving.add(blob.digest.hex)
        this.touch(blob.digest)
      }
      blob.uploaded = up
    }
    const candidates = [...this.blobs.values()].filter((b) => !serving.has(b.digest.hex) && !this.busy(b))
    const { evicted, freed } = await evictLeastRecentlyUsed(candidates, {
      now,
      idleMs: this.opts.ttlMs,
      toFree: await bytesOverWatermark(
        this.opts.store.root,
        this.opts.highWatermark,
        this.opts.lowWatermark,
        () => this.cachedBytes(),
      ),
      max: MAX_EVICTIONS,
      evict: async (blob, reason) => {
        if (!(await this.evict(blob))) return false
        this.evicted.inc({ reason })
        this.opts.log.debug({ digest: blob.digest.toString(), size: blob.size, reason }, 'blob evicted')
        return true
      },
    })
    if (evicted > 0)
      this.opts.log.info(
        { evicted, freedBytes: freed, cached: this.blobs.size, cachedBytes: this.cachedBytes() },
        'agent cache swept',
      )
    return evicted
  }

  /** A client reads it, a removal is under way, or its torrent uploaded since the sweep looked. */
  private busy(blob: Blob): boolean {
    const hex = blob.digest.hex
    if (this.readers.has(hex) || this.removing.has(hex)) return true
    const up = this.opts.downloads.bytesUploaded(blob.digest)
    return up !== undefined && up > blob.uploaded
  }

  /** Removes the blob unless it became busy; true when it is gone. */
  private evict(blob: Blob): Promise<boolean> {
    const hex = blob.digest.hex
    if (this.busy(blob) || this.blobs.get(hex) !== blob) return Promise.resolve(false)
    const run = this.doEvict(blob).finally(() => {
      if (this.removing.get(hex) === run) this.removing.delete(hex)
    })
    this.removing.set(hex, run)
    return run
  }

  private async doEvict(blob: Blob): Promise<boolean> {
    const { downloads, store, log } = this.opts
    const hex = blob.digest.hex
    this.blobs.delete(hex)
    // Stop seeding first: no peer reads the file from here on.
    await downloads.release(blob.digest, await this.metaInfo(blob.digest))
    // A client may have started reading while the engine let go of it: keep it, seed it again.
    if (this.readers.has(hex)) {
      this.blobs.set(hex, blob)
      blob.uploaded = 0
      await downloads.reseed(blob.digest)
      return false
    }
    try {
      await store.delete(blob.digest)
    } catch (err) {
      log.warn({ err: toShoalError(err).message, digest: blob.digest.toString() }, 'cannot evict a blob')
      this.blobs.set(hex, blob)
      blob.uploaded = 0
      await downloads.reseed(blob.digest)
      return false
    }
    return true
  }

  private cachedBytes(): number {
    let sum = 0
    for (const b of this.blobs.values()) sum += b.size
    return sum
  }

  /** The sidecar metainfo of a cached blob; a damaged sidecar must not block removing the blob. */
  private async metaInfo(digest: Digest): Promise<MetaInfo | undefined> {
    try {
      const raw = await this.opts.store.readMetaInfo(digest)
      return raw ? MetaInfo.parse(raw) : undefined
    } catch {
      return undefined
    }
  }

  /** Writes the blob's last use to its file's mtime; a failure only costs recency after a restart. */
  private async persist(blob: Blob): Promise<void> {
    const at = blob.lastUsed
    try {
      const seconds = at / 1000
      await utimes(this.opts.store.blobPath(blob.digest), seconds, seconds)
      blob.persisted = Math.max(blob.persisted, at)
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT')
        this.opts.log.debug(
          { digest: blob.digest.toString(), err: toShoalError(err).message },
          'cannot record the last use of a cached blob',
        )
    }
  }
}
