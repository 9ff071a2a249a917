/**
 * Uploads: start (ALREADY_EXISTS when the blob is stored; one live upload per digest), chunks,
 * and the commit, which verifies the sha256, moves the blob into the cache, makes its write-back
 * mark durable (writeback.ts writes it to the backend afterwards), writes the metainfo sidecar
 * and seeds it, all before it answers.
 */
import type { Readable } from 'node:stream'
import type { NamespaceBackends } from '../../backend/router.js'
import type { Digest, MetaInfo } from '../../core/index.js'
import { isShoalError, ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { BlobStore } from '../../store/index.js'
import { blobKey } from './keys.js'
import type { OriginMetrics } from './metrics.js'
import type { OpenUploads } from './open-uploads.js'
import type { Seeds } from './seeder.js'
import type { Work } from './work.js'
import type { WriteBack } from './writeback.js'

/**
 * A POST for a digest another upload is sending waits this long for it to end, then answers
 * UPLOAD_IN_PROGRESS and the client asks again: below the clients' 30 s answer timeout.
 */
const UPLOAD_WAIT_MS = 20_000
/** An upload of the digest idle this long (no request on it) is not waited for: its client is gone. */
const UPLOAD_STALE_MS = 30_000

export class UploadService {
  constructor(
    private readonly opts: {
      store: BlobStore
      backends: NamespaceBackends
      uploads: OpenUploads
      writeBack: WriteBack
      /** Tells the cache policy a blob entered the cache. */
      cached: (digest: Digest, size: number) => void
      /** A push of the blob ended here: committed, or refused as already stored (GC's memory, gc.ts). */
      pushed?: (digest: Digest) => void
      seeds: Seeds
      metaInfo: (digest: Digest) => Promise<MetaInfo>
      work: Work
      log: Logger
      metrics: OriginMetrics
    },
  ) {}

  /**
   * Starts an upload for `client` (its address), or ALREADY_EXISTS when the blob is stored (made
   * durable in `ns` first). While another upload of the digest is live it waits for that one to
   * end, so concurrent pushes of one blob send it once (UPLOAD_IN_PROGRESS after UPLOAD_WAIT_MS:
   * ask again). TOO_MANY_REQUESTS over the caps of open uploads.
   */
  async start(ns: string, digest: Digest, client: string, signal?: AbortSignal): Promise<string> {
    const { store, uploads, work } = this.opts
    const deadline = Date.now() + UPLOAD_WAIT_MS
    for (;;) {
      work.check()
      try {
        await this.refuseStored(ns, digest)
      } catch (err) {
        if (isShoalError(err, 'ALREADY_EXISTS')) this.opts.pushed?.(digest)
        throw err
      }
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
  async delete(uid: string): Promise<void> {
    await this.opts.store.deleteUpload(uid)
    this.opts.uploads.remove(uid)
  }

  /** Deletes expired uploads (their entries and files); returns how many. */
  async expire(): Promise<number> {
    const expired = this.opts.uploads.sweep()
    for (const uid of expired) await this.opts.store.deleteUpload(uid).catch(() => undefined)
    return expired.length
  }

  /**
   * Writes one chunk of an upload (see BlobStore.appendUpload). Tracked, so stop() returns only
   * once the upload file is closed again.
   */
  async append(
    target: { digest: Digest; client: string },
    uid: string,
    offset: number,
    body: Readable,
    length: number,
    signal?: AbortSignal,
  ): Promise<number> {
    const { work, uploads } = this.opts
    work.check()
    const open = await this.openUpload(uid, target.digest, target.client)
    uploads.begin(open)
    // Aborted by the request (client gone) or by stop(), whichever comes first.
    const both = new AbortController()
    const abort = () => both.abort()
    const stopping = work.signal
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
        uploads.finish(open)
        stopping.removeEventListener('abort', abort)
        signal?.removeEventListener('abort', abort)
      })
    return work.track(job)
  }

  /**
   * Verifies and stores the upload; resolves once the blob is in the cache and its write-back
   * mark is on disk (durable on this origin; the backend gets it in the background).
   * stop() aborts a commit in progress (the upload stays, so the client can commit it again
   * after a restart) and waits for it to end.
   */
  async commit(ns: string, digest: Digest, uid: string, client: string): Promise<{ size: number }> {
    blobKey(ns, digest)
    const { uploads, work } = this.opts
    work.check()
    const open = await this.openUpload(uid, digest, client)
    uploads.begin(open)
    try {
      const out = await work.track(this.store(ns, digest, uid))
      uploads.remove(uid) // moved into the cache: whoever waited for it finds the blob stored
      return out
    } catch (err) {
      if (isShoalError(err, 'DIGEST_MISMATCH')) uploads.remove(uid) // the file was discarded
      throw err
    } finally {
      uploads.finish(open)
    }
  }

  private async store(ns: string, digest: Digest, uid: string): Promise<{ size: number }> {
    const { store, metrics, log, work } = this.opts
    let size: number
    try {
      ;({ size } = await store.commitUpload(uid, digest, work.signal))
    } catch (err) {
      if (isShoalError(err, 'DIGEST_MISMATCH')) metrics.mismatches.inc({ source: 'upload' })
      throw err
    }
    work.check()
    this.opts.cached(digest, size)
    this.opts.pushed?.(digest)
    // The mark is written while the metainfo is generated. The backend is not asked whether it
    // holds the blob: start() found it did not (or could not tell), and the upload has been this
    // digest's only one since (an overwrite would put the same bytes).
    const [meta] = await Promise.all([
      this.opts.metaInfo(digest),
      this.opts.writeBack.enqueue(ns, digest, size),
    ])
    work.check()
    await this.opts.seeds.tryAdd(digest, meta)
    metrics.committed.inc()
    metrics.uploadedBytes.inc(size)
    log.info({ ns, digest: digest.toString(), size, infoHash: meta.infoHash.hex }, 'upload committed')
    return { size }
  }

  private liveUpload(digest: Digest) {
    const u = this.opts.uploads.ofDigest(digest.hex)
    return u && this.opts.uploads.idleFor(u) < UPLOAD_STALE_MS ? u : undefined
  }

  /**
   * ALREADY_EXISTS when the blob is cached (queued for write-back to `ns` unless the backend has
   * it there) or in the backend. A backend that cannot be asked is taken as not holding it: the
   * push goes on and is held on this origin until the backend works again.
   */
  private async refuseStored(ns: string, digest: Digest): Promise<void> {
    const { store, backends, log } = this.opts
    const backend = backends.for(ns)
    const cached = await store.stat(digest)
    if (cached) await this.opts.writeBack.ensure(ns, digest, cached.size, this.opts.work.signal)
    const stored =
      cached ??
      (await backend.stat(blobKey(ns, digest), this.opts.work.signal).catch((err) => {
        log.debug(
          { err, digest: digest.toString() },
          'backend not asked whether it holds a blob being pushed',
        )
        return undefined
      }))
    if (stored) throw new ShoalError('ALREADY_EXISTS', `blob ${digest} is already stored in namespace ${ns}`)
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
      `upload ${uid} expired (no chunk for ${Math.round(uploads.idleMs / 1000)} s) and was deleted; start a new upload`,
    )
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
