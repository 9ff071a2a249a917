/**
 * What the origin does with blobs, apart from HTTP: where a blob is (cache, being fetched from
 * the backend, unknown), its metainfo, re-verification, deletes and re-seeding at start. It
 * owns the parts that do the rest: uploads (uploads.ts), fetches from the backend
 * (backend-copy.ts), write-back to it (writeback.ts), the cache's eviction (cache-policy.ts),
 * metainfo sidecars (metainfo.ts), and the work stop() waits for (work.ts).
 */
import { join } from 'node:path'
import type { NamespaceBackends } from '../../backend/router.js'
import type { Digest } from '../../core/index.js'
import type { Logger } from '../../log/index.js'
import type { Registry } from '../../metrics/index.js'
import type { BlobStore } from '../../store/index.js'
import type { OriginConfig } from '../config.js'
import { BackendCopy } from './backend-copy.js'
import { CachePolicy } from './cache-policy.js'
import { RecentPushes, refuseIfPushed } from './gc.js'
import { blobKey } from './keys.js'
import { MetaInfos } from './metainfo.js'
import type { OriginMetrics } from './metrics.js'
import type { OpenUploads } from './open-uploads.js'
import type { Seeds } from './seeder.js'
import { checkUnused, type TagLookup } from './tag-guard.js'
import { UploadService } from './uploads.js'
import { BlobVerifier, type VerifyReport, type VerifyResult } from './verifier.js'
import { Work } from './work.js'
import { WriteBack } from './writeback.js'
import { MarkStore } from './writeback-queue.js'

/** A replica asked for: held already, copied just now, or being copied. */
export type ReplicaState = 'cached' | 'copied' | 'fetching'

export type BlobState = { state: 'cached'; size: number } | { state: 'pending'; size: number }

export class BlobService {
  readonly uploads: UploadService
  readonly writeBack: WriteBack
  readonly cache: CachePolicy
  /** Work in flight; stop() aborts and waits for it (replication and repair run under it too). */
  readonly work = new Work()
  private readonly metaInfos: MetaInfos
  private readonly copies: BackendCopy
  private readonly verifier: BlobVerifier
  /** Digests being deleted (count of deletes): HEAD answers 404, so no tag can be put meanwhile. */
  private readonly deleting = new Map<string, number>()
  /** Pushes GC deletes check against (gc.ts). */
  private readonly pushes = new RecentPushes()

  constructor(
    private readonly opts: {
      store: BlobStore
      backends: NamespaceBackends
      seeds: Seeds
      uploads: OpenUploads
      /** Asked before a delete; `buildIndex` names it in errors. */
      tags: TagLookup
      buildIndex: string
      /** Announce URL written into metainfo. */
      announce: string
      log: Logger
      metrics: OriginMetrics
      /** A blob is re-hashed at most this often; one corrupt in the backend is refused this long. */
      verifyIntervalMs: number
      registry: Registry
      writeBack: OriginConfig['writeBack']
      cache: OriginConfig['cache']
    },
  ) {
    const { store, backends, seeds, log, metrics, registry } = opts
    const work = this.work
    this.metaInfos = new MetaInfos({ store, announce: opts.announce, log })
    const metaInfo = (digest: Digest) => this.metaInfos.ensure(digest)
    this.writeBack = new WriteBack({
      store,
      backends,
      marks: new MarkStore(store.root, join(store.root, 'tmp'), log),
      log,
      registry,
      concurrency: opts.writeBack.concurrency,
      maxBackoffMs: opts.writeBack.maxBackoffSeconds * 1000,
    })
    this.cache = new CachePolicy({
      store,
      seeds,
      writeBack: this.writeBack,
      reseed: (digest) => metaInfo(digest).then((meta) => seeds.tryAdd(digest, meta)),
      log,
      registry,
      idleMs: opts.cache.idleSeconds * 1000,
      highWatermark: opts.cache.highWatermark,
      lowWatermark: opts.cache.lowWatermark,
      sweepMs: opts.cache.sweepIntervalSeconds * 1000,
    })
    const cached = (digest: Digest, size: number) => this.cache.added(digest, size)
    this.copies = new BackendCopy({
      store,
      backends,
      seeds,
      metaInfo,
      work,
      log,
      metrics,
      corruptHoldMs: opts.verifyIntervalMs,
      cached,
    })
    this.uploads = new UploadService({
      store,
      backends,
      uploads: opts.uploads,
      writeBack: this.writeBack,
      cached,
      pushed: (digest) => this.pushes.pushed(digest),
      seeds,
      metaInfo,
      work,
      log,
      metrics,
    })
    this.verifier = new BlobVerifier(
      {
        store,
        seeds,
        log,
        metrics,
        locate: (ns, digest) => this.locate(ns, digest),
        restore: (ns, digest) => this.copies.restore(ns, digest),
      },
      opts.verifyIntervalMs,
    )
  }

  /**
   * Where the blob is: cached (servable), pending (being fetched from the backend), or unknown.
   * An existence check (HEAD: what build-index asks before it puts a tag) finds nothing while
   * the blob is being deleted; downloads (GET, metainfo) are served until it is gone, so a
   * refused delete never disturbs a pull.
   */
  async locate(ns: string, digest: Digest, existenceCheck = false): Promise<BlobState | undefined> {
    if (existenceCheck && this.deleting.has(digest.hex)) return undefined
    const cached = await this.opts.store.stat(digest)
    if (cached) {
      this.cache.touch(digest)
      return { state: 'cached', size: cached.size }
    }
    this.copies.throwHeldFailure(digest)
    // Being copied (from a peer origin, which may hold it before the backend does).
    const copying = this.copies.pending(digest)
    if (copying) return { state: 'pending', ...copying }
    const remote = await this.opts.backends.for(ns).stat(blobKey(ns, digest), this.work.signal)
    if (!remote) return undefined
    this.copies.fetch(ns, digest, { size: remote.size })
    return { state: 'pending', size: remote.size }
  }

  /**
   * Copies the blob into the cache from the origin `from` (else from the backend) in the
   * background, unless it is cached: replication.ts, on an owner asked to hold a replica.
   */
  async replicaFrom(ns: string, digest: Digest, from: string, waitMs = 0): Promise<ReplicaState> {
    blobKey(ns, digest)
    this.work.check()
    if (await this.opts.store.stat(digest)) return 'cached'
    this.copies.fetch(ns, digest, { from })
    // A small blob is copied before the answer, which saves the sender polling for it.
    let timer: NodeJS.Timeout | undefined
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs)
    })
    await Promise.race([this.copies.settled(digest), waited])
    clearTimeout(timer)
    return (await this.opts.store.stat(digest)) ? 'copied' : 'fetching'
  }

  /** The .torrent of a blob: bytes, 'pending' while it is fetched, undefined when unknown. */
  async metaInfo(ns: string, digest: Digest): Promise<Buffer | 'pending' | undefined> {
    const where = await this.locate(ns, digest)
    if (!where) return undefined
    if (where.state === 'pending') return 'pending'
    return (await this.metaInfos.ensure(digest)).raw
  }

  /**
   * An agent got a bad piece of the blob from this origin: re-hash the cached copy, and when it
   * is corrupt, drop it and restore it from the backend (BlobVerifier; rate-limited per blob).
   * Rejects with BLOB_CORRUPT when the backend's copy is corrupt too.
   */
  verify(ns: string, digest: Digest, report: VerifyReport): Promise<VerifyResult> {
    blobKey(ns, digest)
    this.work.check()
    return this.work.track(this.verifier.verify(ns, digest, report))
  }

  /**
   * Removes the blob from the cache, the backend (this namespace) and the swarm, unless tags
   * point at it (BLOB_IN_USE) or build-index cannot tell (UNAVAILABLE). Idempotent. Its pending
   * write-back to this namespace is cancelled (an upload in progress aborted, the mark removed);
   * the cached copy stays while it waits to be written back to another namespace.
   *
   * HEAD answers 404 from before build-index is asked until the delete ends. Build-index
   * records a tag's digest before it checks the blob here, so a tag put either is seen by the
   * question or finds the blob gone: a tag never ends up pointing at a deleted blob.
   *
   * `unlessPushedSince` (epoch ms on this host; build-index's GC): BLOB_RECOMMITTED when the blob was pushed
   * here since then (gc.ts).
   */
  async deleteBlob(
    ns: string,
    digest: Digest,
    signal?: AbortSignal,
    unlessPushedSince?: number,
  ): Promise<void> {
    const key = blobKey(ns, digest)
    // Before anything is removed: a namespace without a backend is refused untouched.
    const backend = this.opts.backends.for(ns)
    const hex = digest.hex
    this.deleting.set(hex, (this.deleting.get(hex) ?? 0) + 1)
    try {
      await checkUnused(this.opts.tags, digest, this.opts.buildIndex, signal)
      const { store, log } = this.opts
      await refuseIfPushed(
        { pushes: this.pushes, store, writeBack: this.writeBack, log },
        ns,
        digest,
        unlessPushedSince,
      )
      await this.copies.settled(digest)
      await this.writeBack.cancel(ns, digest)
      const dropped = !this.writeBack.has(digest)
      if (dropped) {
        await this.opts.seeds.remove(digest)
        await this.opts.store.delete(digest)
        this.cache.forget(digest)
      }
      await backend.delete(key)
      // A push of the cached blob during the delete may have queued it again: it is gone now.
      if (dropped) await this.writeBack.cancel(ns, digest)
      this.copies.forget(digest)
      this.verifier.forget(hex)
    } finally {
      const n = (this.deleting.get(hex) ?? 1) - 1
      if (n > 0) this.deleting.set(hex, n)
      else this.deleting.delete(hex)
    }
    this.opts.log.info({ ns, digest: digest.toString() }, 'blob deleted')
  }

  /** Seeds every cached blob (at start). Blobs without a metainfo sidecar are hashed in the background. */
  async reseed(): Promise<void> {
    const { store, seeds, log } = this.opts
    if (!seeds.enabled) return
    const reseed = (digest: Digest) =>
      this.metaInfos
        .ensure(digest)
        .then((meta) => seeds.tryAdd(digest, meta))
        .catch((err) => log.warn({ err, digest: digest.toString() }, 'cannot re-seed a cached blob'))
    const missing: Digest[] = []
    for await (const digest of store.list()) {
      if (await store.readMetaInfo(digest)) await reseed(digest)
      else missing.push(digest)
    }
    log.info({ seeding: seeds.count, withoutMetainfo: missing.length }, 're-seeded cached blobs')
    if (missing.length > 0) {
      this.work.track(
        (async () => {
          for (const digest of missing) {
            if (this.work.signal.aborted) return
            await reseed(digest)
          }
        })(),
      )
    }
  }

  /**
   * Accepts work again (also after stop(): an origin started again after a failed start), then
   * re-queues the write-backs a previous run left and indexes the cache for eviction. The
   * store must be initialised.
   */
  async start(): Promise<void> {
    this.work.start()
    await this.writeBack.start()
    await this.cache.start()
  }

  /**
   * Stops sweeping the cache and writing back (writes in progress aborted; their marks stay for
   * the next start), aborts backend fetches, commits and appends, then waits for everything in
   * flight to end, metainfo generation included (it cannot be aborted; its sidecar is useful at
   * the next start).
   */
  async stop(): Promise<void> {
    const running = this.work.stop(() => [...this.copies.running(), ...this.metaInfos.running()])
    this.opts.uploads.clear()
    await Promise.all([this.cache.stop(), this.writeBack.stop(), running])
  }
}
