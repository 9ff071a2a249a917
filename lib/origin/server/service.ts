/**
 * What the origin does with blobs, apart from HTTP: uploads and their commit (verify, metainfo,
 * write-back, seed), background fetches from the backend into the cache, metainfo sidecars,
 * deletes.
 *
 * Backend key layout: `blobs/<namespace>/sha256/<hex[0:2]>/<hex>`. The namespace is part of the
 * key so deleting a blob in one namespace never removes another namespace's copy; the local
 * cache is content-addressed and shared by all namespaces.
 */

import type { Readable } from 'node:stream'
import type { Backend } from '../../backend/index.js'
import { bencodeDecode, bencodeEncode } from '../../core/bencode.js'
import { type Digest, MetaInfo, parseNamespace } from '../../core/index.js'
import { isAbortError, isShoalError, ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { Counter } from '../../metrics/index.js'
import type { BlobStore } from '../../store/index.js'
import type { OpenUploads } from './open-uploads.js'
import type { Seeds } from './seeder.js'
import { checkUnused, type TagLookup } from './tag-guard.js'
import { BlobVerifier, type VerifyReport, type VerifyResult } from './verifier.js'

/** After a failed backend fetch, requests get that error for this long instead of a new fetch. */
const FAILURE_HOLD_MS = 10_000
/**
 * A POST for a digest another upload is sending waits this long for it to end, then answers
 * UPLOAD_IN_PROGRESS and the client asks again: below the clients' 30 s answer timeout.
 */
const UPLOAD_WAIT_MS = 20_000
/** An upload of the digest idle this long (no request on it) is not waited for: its client is gone. */
const UPLOAD_STALE_MS = 30_000

/** Validates a namespace from a request (it becomes part of backend keys). */
export const checkNamespace = parseNamespace

export function blobKey(ns: string, digest: Digest): string {
  return `blobs/${checkNamespace(ns)}/sha256/${digest.hex.slice(0, 2)}/${digest.hex}`
}

export interface OriginMetrics {
  committed: Counter
  uploadedBytes: Counter
  /** Bytes of upload chunks received (whether or not they were committed). */
  receivedBytes: Counter
  mismatches: Counter
  fetches: Counter
  /** Blobs found corrupt, by where the bad copy was (source: cache | backend). */
  corrupt: Counter
  /** Re-verifications agents asked for, by result (ok, restored, restoring, corrupt, error). */
  verifications: Counter
}

export type BlobState = { state: 'cached'; size: number } | { state: 'pending'; size: number }

export class BlobService {
  private readonly fetching = new Map<string, Promise<void>>()
  /** Failed backend fetches: requests get `error` for `holdMs` rather than a new fetch. */
  private readonly failures = new Map<string, { at: number; holdMs: number; error: ShoalError }>()
  private readonly verifier: BlobVerifier
  private readonly generating = new Map<string, Promise<MetaInfo>>()
  /** Work that stop() waits for: commits, appends, background metainfo generation. */
  private readonly background = new Set<Promise<unknown>>()
  private controller = new AbortController()
  /** Digests being deleted (count of deletes): HEAD answers 404, so no tag can be put meanwhile. */
  private readonly deleting = new Map<string, number>()

  constructor(
    private readonly opts: {
      store: BlobStore
      backend: Backend
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
    },
  ) {
    this.verifier = new BlobVerifier(
      {
        store: opts.store,
        seeds: opts.seeds,
        log: opts.log,
        metrics: opts.metrics,
        locate: (ns, digest) => this.locate(ns, digest),
        restore: (ns, digest) => this.restore(ns, digest),
      },
      opts.verifyIntervalMs,
    )
  }

  /**
   * Starts an upload for `client` (its address), or ALREADY_EXISTS when the blob is stored (made
   * durable in `ns` first). While another upload of the digest is live it waits for that one to
   * end, so concurrent pushes of one blob send it once (UPLOAD_IN_PROGRESS after UPLOAD_WAIT_MS:
   * ask again). TOO_MANY_REQUESTS over the caps of open uploads.
   */
  async startUpload(ns: string, digest: Digest, client: string, signal?: AbortSignal): Promise<string> {
    const { store, uploads } = this.opts
    const deadline = Date.now() + UPLOAD_WAIT_MS
    for (;;) {
      this.checkRunning()
      await this.refuseStored(ns, digest)
      const running = this.liveUpload(digest)
      if (running) {
        const left = deadline - Date.now()
        if (left <= 0) {
          throw new ShoalError(
            'UPLOAD_IN_PROGRESS',
            `blob ${digest} is being uploaded by another request; ask again (it is stored once that upload commits)`,
          )
        }
        await waitEnded(running.ended, left, signal)
        continue
      }
      const uid = await store.createUpload()
      // Checked again after the await: a concurrent POST may have started this digest meanwhile.
      let expired: string[]
      try {
        if (this.liveUpload(digest)) {
          await store.deleteUpload(uid)
          continue
        }
        expired = uploads.admit(client)
      } catch (err) {
        await store.deleteUpload(uid)
        throw err
      }
      uploads.add(uid, digest.hex, client)
      for (const old of expired) await store.deleteUpload(old).catch(() => undefined)
      return uid
    }
  }

  /** Aborts an upload (its client gave up). */
  async deleteUpload(uid: string): Promise<void> {
    await this.opts.store.deleteUpload(uid)
    this.opts.uploads.remove(uid)
  }

  /** Deletes expired uploads (their entries and files); returns how many. */
  async expireUploads(): Promise<number> {
    const expired = this.opts.uploads.sweep()
    for (const uid of expired) await this.opts.store.deleteUpload(uid).catch(() => undefined)
    return expired.length
  }

  private liveUpload(digest: Digest) {
    const u = this.opts.uploads.ofDigest(digest.hex)
    return u && this.opts.uploads.idleFor(u) < UPLOAD_STALE_MS ? u : undefined
  }

  private async refuseStored(ns: string, digest: Digest): Promise<void> {
    const { store, backend } = this.opts
    const cached = await store.stat(digest)
    if (cached) await this.writeBack(ns, digest, cached.size)
    if (cached || (await backend.stat(blobKey(ns, digest)))) {
      throw new ShoalError('ALREADY_EXISTS', `blob ${digest} is already stored in namespace ${ns}`)
    }
  }

  /**
   * The open upload `uid` (adopted when it outlived a restart); an expired one is deleted and
   * UPLOAD_NOT_FOUND, as if it never existed.
   */
  private async openUpload(uid: string, digest: Digest, client: string) {
    const { uploads, store } = this.opts
    const known = uploads.get(uid)
    if (known && !uploads.isExpired(known)) return known
    if (known) {
      uploads.remove(uid)
      await store.deleteUpload(uid)
    } else {
      await store.uploadOffset(uid) // UPLOAD_NOT_FOUND when there is no such file
      return uploads.add(uid, digest.hex, client)
    }
    throw new ShoalError(
      'UPLOAD_NOT_FOUND',
      `upload ${uid} expired (no chunk for ${Math.round(this.opts.uploads.idleMs / 1000)} s) and was deleted; start a new upload`,
    )
  }

  /**
   * Writes one chunk of an upload (see BlobStore.appendUpload). Tracked, so stop() returns only
   * once the upload file is closed again.
   */
  async appendUpload(
    target: { digest: Digest; client: string },
    uid: string,
    offset: number,
    body: Readable,
    length: number,
    signal?: AbortSignal,
  ): Promise<number> {
    this.checkRunning()
    const open = await this.openUpload(uid, target.digest, target.client)
    this.opts.uploads.begin(open)
    // Aborted by the request (client gone) or by stop(), whichever comes first.
    const both = new AbortController()
    const abort = () => both.abort()
    const stopping = this.controller.signal
    stopping.addEventListener('abort', abort, { once: true })
    signal?.addEventListener('abort', abort, { once: true })
    if (signal?.aborted) both.abort()
    const job = this.opts.store
      .appendUpload(uid, offset, body, length, both.signal)
      .then((end) => {
        this.opts.metrics.receivedBytes.inc(length)
        return end
      })
      .finally(() => {
        this.opts.uploads.finish(open)
        stopping.removeEventListener('abort', abort)
        signal?.removeEventListener('abort', abort)
      })
    return this.track(job)
  }

  /**
   * Verifies and stores the upload; resolves only once the blob is in the backend (durable).
   * stop() aborts a commit in progress (the upload stays, so the client can commit it again
   * after a restart) and waits for it to end.
   */
  async commitUpload(ns: string, digest: Digest, uid: string, client: string): Promise<{ size: number }> {
    blobKey(ns, digest)
    this.checkRunning()
    const { uploads } = this.opts
    const open = await this.openUpload(uid, digest, client)
    uploads.begin(open)
    try {
      const out = await this.track(this.commit(ns, digest, uid))
      uploads.remove(uid) // moved into the cache: whoever waited for it finds the blob stored
      return out
    } catch (err) {
      if (isShoalError(err, 'DIGEST_MISMATCH')) uploads.remove(uid) // the file was discarded
      throw err
    } finally {
      uploads.finish(open)
    }
  }

  private async commit(ns: string, digest: Digest, uid: string): Promise<{ size: number }> {
    const { store, metrics, log } = this.opts
    const signal = this.controller.signal
    let size: number
    try {
      ;({ size } = await store.commitUpload(uid, digest, signal))
    } catch (err) {
      if ((err as ShoalError).code === 'DIGEST_MISMATCH') metrics.mismatches.inc({ source: 'upload' })
      throw err
    }
    this.checkRunning()
    // Both read the whole blob; doing them side by side halves the wait for big blobs.
    const [meta] = await Promise.all([this.ensureMetaInfo(digest), this.writeBack(ns, digest, size)])
    this.checkRunning()
    await this.seed(digest, meta)
    metrics.committed.inc()
    metrics.uploadedBytes.inc(size)
    log.info({ ns, digest: digest.toString(), size, infoHash: meta.infoHash.hex }, 'upload committed')
    return { size }
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
    if (cached) return { state: 'cached', size: cached.size }
    const failure = this.failures.get(digest.hex)
    if (failure && Date.now() - failure.at < failure.holdMs && !this.fetching.has(digest.hex))
      throw failure.error
    const remote = await this.opts.backend.stat(blobKey(ns, digest), this.controller.signal)
    if (!remote) return undefined
    this.fetch(ns, digest)
    return { state: 'pending', size: remote.size }
  }

  /** The .torrent of a blob: bytes, 'pending' while it is fetched, undefined when unknown. */
  async metaInfo(ns: string, digest: Digest): Promise<Buffer | 'pending' | undefined> {
    const where = await this.locate(ns, digest)
    if (!where) return undefined
    if (where.state === 'pending') return 'pending'
    return (await this.ensureMetaInfo(digest)).raw
  }

  /**
   * An agent got a bad piece of the blob from this origin: re-hash the cached copy, and when it
   * is corrupt, drop it and restore it from the backend (BlobVerifier; rate-limited per blob).
   * Rejects with BLOB_CORRUPT when the backend's copy is corrupt too.
   */
  verify(ns: string, digest: Digest, report: VerifyReport): Promise<VerifyResult> {
    blobKey(ns, digest)
    this.checkRunning()
    return this.track(this.verifier.verify(ns, digest, report))
  }

  /**
   * Removes the blob from the cache, the backend (this namespace) and the swarm, unless tags
   * point at it (BLOB_IN_USE) or build-index cannot tell (UNAVAILABLE). Idempotent.
   *
   * HEAD answers 404 from before build-index is asked until the delete ends. Build-index
   * records a tag's digest before it checks the blob here, so a tag put either is seen by the
   * question or finds the blob gone: a tag never ends up pointing at a deleted blob.
   */
  async deleteBlob(ns: string, digest: Digest, signal?: AbortSignal): Promise<void> {
    const key = blobKey(ns, digest)
    const hex = digest.hex
    this.deleting.set(hex, (this.deleting.get(hex) ?? 0) + 1)
    try {
      await checkUnused(this.opts.tags, digest, this.opts.buildIndex, signal)
      await this.fetching.get(hex)?.catch(() => undefined)
      await this.opts.seeds.remove(digest)
      await this.opts.store.delete(digest)
      await this.opts.backend.delete(key)
      this.failures.delete(hex)
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
    const missing: Digest[] = []
    for await (const digest of store.list()) {
      if (!(await store.readMetaInfo(digest))) {
        missing.push(digest)
        continue
      }
      await this.ensureMetaInfo(digest)
        .then((meta) => this.seed(digest, meta))
        .catch((err) => log.warn({ err, digest: digest.toString() }, 'cannot re-seed a cached blob'))
    }
    log.info({ seeding: seeds.count, withoutMetainfo: missing.length }, 're-seeded cached blobs')
    if (missing.length > 0) {
      this.track(
        (async () => {
          for (const digest of missing) {
            if (this.controller.signal.aborted) return
            await this.ensureMetaInfo(digest)
              .then((meta) => this.seed(digest, meta))
              .catch((err) => log.warn({ err, digest: digest.toString() }, 'cannot re-seed a cached blob'))
          }
        })(),
      )
    }
  }

  /**
   * Reads (or generates and stores) the blob's metainfo. A sidecar that no longer parses or does
   * not match the blob is regenerated; one with another tracker URL gets ours (infohash unchanged).
   */
  ensureMetaInfo(digest: Digest): Promise<MetaInfo> {
    const running = this.generating.get(digest.hex)
    if (running) return running
    const job = this.loadMetaInfo(digest).finally(() => this.generating.delete(digest.hex))
    this.generating.set(digest.hex, job)
    return job
  }

  /** Accepts work again after stop() (an origin started again after a failed start). */
  start(): void {
    if (this.controller.signal.aborted) this.controller = new AbortController()
  }

  /**
   * Aborts backend transfers, commits and appends, then waits for everything in flight to end,
   * metainfo generation included (it cannot be aborted; its sidecar is useful at the next start).
   */
  async stop(): Promise<void> {
    this.controller.abort()
    this.opts.uploads.clear()
    while (this.fetching.size + this.background.size + this.generating.size > 0) {
      await Promise.allSettled([...this.fetching.values(), ...this.background, ...this.generating.values()])
    }
  }

  private async loadMetaInfo(digest: Digest): Promise<MetaInfo> {
    const { store, announce, log } = this.opts
    const st = await store.stat(digest)
    if (!st) throw new ShoalError('BLOB_NOT_FOUND', `blob ${digest} is not in this origin's cache`)
    const raw = await store.readMetaInfo(digest)
    if (raw) {
      let meta: MetaInfo | undefined
      try {
        meta = MetaInfo.parse(raw)
      } catch (err) {
        log.warn({ err, digest: digest.toString() }, 'metainfo sidecar is corrupt; regenerating')
      }
      if (meta && meta.length === st.size && meta.name === digest.hex) {
        if (meta.announce === announce) return meta
        const fixed = MetaInfo.parse(withAnnounce(meta.raw, announce))
        await store.writeMetaInfo(digest, fixed.raw)
        return fixed
      }
    }
    const meta = await MetaInfo.create(store.blobPath(digest), { name: digest.hex, announce, size: st.size })
    await store.writeMetaInfo(digest, meta.raw)
    return meta
  }

  private async seed(digest: Digest, meta: MetaInfo): Promise<void> {
    try {
      await this.opts.seeds.add(digest, meta)
    } catch (err) {
      // The blob is stored and durable; failing to seed must not fail the request.
      this.opts.log.warn({ err, digest: digest.toString() }, 'cannot seed blob')
    }
  }

  /** Makes sure the backend holds the cached blob under `ns` (skipped when it already does). */
  private async writeBack(ns: string, digest: Digest, size: number): Promise<void> {
    const { store, backend } = this.opts
    const key = blobKey(ns, digest)
    const signal = this.controller.signal
    if ((await backend.stat(key, signal))?.size === size) return
    try {
      await backend.put(key, store.createReadStream(digest), { size, signal })
    } catch (err) {
      const e = toShoalError(err, 'BACKEND_ERROR')
      throw new ShoalError(
        e.code === 'ABORTED' ? 'ABORTED' : 'BACKEND_ERROR',
        `cannot write ${digest} back to the backend: ${e.message}`,
        {
          cause: err,
        },
      )
    }
  }

  /** Fetches the blob from the backend into the cache (verified) and seeds it; rejects with why not. */
  private async restore(ns: string, digest: Digest): Promise<void> {
    this.failures.delete(digest.hex)
    this.fetch(ns, digest)
    await this.fetching.get(digest.hex)
    if (await this.opts.store.stat(digest)) return
    this.checkRunning()
    throw (
      this.failures.get(digest.hex)?.error ??
      new ShoalError('BACKEND_ERROR', `cannot restore ${digest} from the backend`)
    )
  }

  /** Fetches the blob from the backend into the cache in the background (one fetch per digest). */
  private fetch(ns: string, digest: Digest): void {
    if (this.fetching.has(digest.hex) || this.controller.signal.aborted) return
    const { store, backend, log, metrics } = this.opts
    const signal = this.controller.signal
    const started = Date.now()
    const job = (async () => {
      const body = await backend.get(blobKey(ns, digest), { signal })
      const { size } = await store.putStream(digest, body, signal)
      this.failures.delete(digest.hex)
      metrics.fetches.inc({ result: 'ok' })
      log.info({ ns, digest: digest.toString(), size, ms: Date.now() - started }, 'blob fetched from backend')
      await this.seed(digest, await this.ensureMetaInfo(digest))
    })()
      .catch((err) => {
        if (isAbortError(err) || signal.aborted) return
        const e = toShoalError(err, 'BACKEND_ERROR')
        metrics.fetches.inc({ result: 'error' })
        if (this.failures.size >= 1000) {
          for (const [hex, f] of this.failures) if (Date.now() - f.at >= f.holdMs) this.failures.delete(hex)
        }
        if (e.code === 'DIGEST_MISMATCH') {
          // Nothing was stored (putStream verifies on the way in). Serving it is out of the
          // question, and fetching it again soon would only say the same.
          metrics.mismatches.inc({ source: 'backend' })
          metrics.corrupt.inc({ source: 'backend' })
          const actual = e.details?.actual
          const error = new ShoalError(
            'BLOB_CORRUPT',
            `the backend's copy of ${digest} (namespace ${ns}) is corrupt (it hashes to ${actual}); ` +
              'the origin refuses to serve it: restore the backend object, or delete the blob from the origin ' +
              '(DELETE /namespace/:ns/blobs/:digest) and push the file again',
            { cause: err },
          )
          this.failures.set(digest.hex, { at: Date.now(), holdMs: this.opts.verifyIntervalMs, error })
          log.error(
            { ns, digest: digest.toString(), actual },
            'backend copy is corrupt; refusing to serve it',
          )
          return
        }
        const message = `cannot fetch ${digest} from the backend: ${e.message}`
        this.failures.set(digest.hex, {
          at: Date.now(),
          holdMs: FAILURE_HOLD_MS,
          error: new ShoalError('BACKEND_ERROR', message, { cause: err }),
        })
        log.error({ ns, digest: digest.toString(), code: e.code, err: e.message }, 'backend fetch failed')
      })
      .finally(() => this.fetching.delete(digest.hex))
    this.fetching.set(digest.hex, job)
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.background.add(p)
    void p.catch(() => undefined).finally(() => this.background.delete(p))
    return p
  }

  private checkRunning(): void {
    if (this.controller.signal.aborted) throw new ShoalError('ABORTED', 'the origin is stopping')
  }
}

/** Resolves when `ended` does or after `ms`; ABORTED when the client goes away first. */
function waitEnded(ended: Promise<void>, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }
    const onAbort = () => {
      clearTimeout(timer)
      reject(new ShoalError('ABORTED', 'the client went away while waiting for another upload'))
    }
    const timer = setTimeout(done, ms)
    if (signal?.aborted) return onAbort()
    signal?.addEventListener('abort', onAbort, { once: true })
    void ended.then(done)
  })
}

/** The same torrent with `announce` as its only tracker; the info dictionary is untouched. */
function withAnnounce(raw: Buffer, announce: string): Buffer {
  const decoded = bencodeDecode(raw) as Record<string, unknown>
  decoded.announce = Buffer.from(announce)
  decoded['announce-list'] = [[Buffer.from(announce)]]
  return bencodeEncode(decoded)
}
