/**
 * Blobs from the backend into the cache: fetched in the background (one fetch per digest,
 * verified on the way in, then seeded), when a blob is asked for that is not cached (never
 * was, or was evicted). A replica (replication.ts) is copied from a peer origin the same way,
 * falling back to the backend when the peer cannot send it. A failed fetch is held for a
 * while, so requests get its error rather than starting fetch after fetch. (The way back,
 * cache to backend, is writeback.ts.)
 */
import type { NamespaceBackends } from '../../backend/router.js'
import type { Digest, MetaInfo } from '../../core/index.js'
import { isAbortError, ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { BlobStore } from '../../store/index.js'
import { OriginClient } from '../client/index.js'
import { blobKey } from './keys.js'
import type { OriginMetrics } from './metrics.js'
import type { Seeds } from './seeder.js'
import type { Work } from './work.js'

/** After a failed backend fetch, requests get that error for this long instead of a new fetch. */
const FAILURE_HOLD_MS = 10_000
/** Failures remembered before expired ones are swept. */
const MAX_FAILURES = 1000

export class BackendCopy {
  private readonly fetching = new Map<string, Promise<void>>()
  /** Sizes of the blobs being fetched, when known (HEAD answers them while pending). */
  private readonly sizes = new Map<string, number>()
  /** Failed backend fetches: requests get `error` for `holdMs` rather than a new fetch. */
  private readonly failures = new Map<string, { at: number; holdMs: number; error: ShoalError }>()

  constructor(
    private readonly opts: {
      store: BlobStore
      backends: NamespaceBackends
      seeds: Seeds
      metaInfo: (digest: Digest) => Promise<MetaInfo>
      work: Work
      log: Logger
      metrics: OriginMetrics
      /** How long a backend copy found corrupt is refused before it is fetched again. */
      corruptHoldMs: number
      /** Tells the cache policy a blob entered the cache. */
      cached: (digest: Digest, size: number) => void
    },
  ) {}

  /** Throws the error of a recent failed fetch of the digest (none is running now). */
  throwHeldFailure(digest: Digest): void {
    const failure = this.failures.get(digest.hex)
    if (failure && Date.now() - failure.at < failure.holdMs && !this.fetching.has(digest.hex))
      throw failure.error
  }

  /** Fetches in progress (stop() waits for them). */
  running(): Promise<void>[] {
    return [...this.fetching.values()]
  }

  /** The blob is being fetched: its size (0 when not known yet); undefined when it is not. */
  pending(digest: Digest): { size: number } | undefined {
    if (!this.fetching.has(digest.hex)) return undefined
    return { size: this.sizes.get(digest.hex) ?? 0 }
  }

  /** Waits for a fetch of the digest in progress to end, however it ends. */
  async settled(digest: Digest): Promise<void> {
    await this.fetching.get(digest.hex)?.catch(() => undefined)
  }

  /** Forgets a failed fetch of the digest (it was deleted). */
  forget(digest: Digest): void {
    this.failures.delete(digest.hex)
  }

  /** Fetches the blob from the backend into the cache and seeds it; rejects with why not. */
  async restore(ns: string, digest: Digest): Promise<void> {
    this.failures.delete(digest.hex)
    this.fetch(ns, digest)
    await this.fetching.get(digest.hex)
    if (await this.opts.store.stat(digest)) return
    this.opts.work.check()
    throw (
      this.failures.get(digest.hex)?.error ??
      new ShoalError('BACKEND_ERROR', `cannot restore ${digest} from the backend`)
    )
  }

  /**
   * Fetches the blob into the cache in the background (one fetch per digest): from the origin
   * `from` (host:port) when given, else or when that fails from the backend.
   */
  fetch(ns: string, digest: Digest, opts: { from?: string; size?: number } = {}): void {
    const signal = this.opts.work.signal
    if (this.fetching.has(digest.hex) || signal.aborted) return
    // A replica asked for now is not refused for an earlier failure (restore() does the same).
    if (opts.from) this.failures.delete(digest.hex)
    const { store, log, metrics } = this.opts
    const started = Date.now()
    if (opts.size !== undefined) this.sizes.set(digest.hex, opts.size)
    const job = (async () => {
      const source = opts.from && (await this.fromPeer(ns, digest, opts.from, signal)) ? 'peer' : 'backend'
      if (source === 'backend') {
        const body = await this.opts.backends.for(ns).get(blobKey(ns, digest), { signal })
        await store.putStream(digest, body, signal)
        metrics.fetches.inc({ result: 'ok' })
      }
      const size = (await store.stat(digest))?.size ?? 0
      this.opts.cached(digest, size)
      this.failures.delete(digest.hex)
      const ms = Date.now() - started
      log.info(
        { ns, digest: digest.toString(), size, ms, from: opts.from, source },
        `blob fetched from ${source}`,
      )
      await this.opts.seeds.tryAdd(digest, await this.opts.metaInfo(digest))
    })()
      .catch((err) => {
        if (isAbortError(err) || signal.aborted) return
        this.failed(ns, digest, err)
      })
      .finally(() => {
        this.fetching.delete(digest.hex)
        this.sizes.delete(digest.hex)
      })
    this.fetching.set(digest.hex, job)
  }

  /**
   * Copies the blob from the origin `from` (verified on the way in); false, logged, when it
   * cannot (it lacks the blob, is down, sends bytes that do not match): the backend is next.
   */
  private async fromPeer(ns: string, digest: Digest, from: string, signal: AbortSignal): Promise<boolean> {
    const peer = new OriginClient(from)
    try {
      const stat = await peer.stat(ns, digest, signal)
      if (!stat || stat.pending) throw new ShoalError('BLOB_NOT_FOUND', `${from} does not hold ${digest}`)
      this.sizes.set(digest.hex, stat.size)
      await this.opts.store.putStream(digest, await peer.download(ns, digest, { signal }), signal)
      this.opts.metrics.peerFetches.inc({ result: 'ok' })
      return true
    } catch (err) {
      if (isAbortError(err) || signal.aborted) throw err
      const e = toShoalError(err, 'UPSTREAM_ERROR')
      if (e.code === 'DIGEST_MISMATCH') this.opts.metrics.mismatches.inc({ source: 'peer' })
      this.opts.metrics.peerFetches.inc({ result: 'error' })
      this.opts.log.warn(
        { ns, digest: digest.toString(), from, code: e.code, err: e.message },
        'cannot copy a replica from the peer origin; fetching it from the backend',
      )
      return false
    }
  }

  private failed(ns: string, digest: Digest, err: unknown): void {
    const { log, metrics } = this.opts
    const e = toShoalError(err, 'BACKEND_ERROR')
    metrics.fetches.inc({ result: 'error' })
    if (this.failures.size >= MAX_FAILURES) {
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
      this.failures.set(digest.hex, { at: Date.now(), holdMs: this.opts.corruptHoldMs, error })
      log.error({ ns, digest: digest.toString(), actual }, 'backend copy is corrupt; refusing to serve it')
      return
    }
    const message = `cannot fetch ${digest} from the backend: ${e.message}`
    this.failures.set(digest.hex, {
      at: Date.now(),
      holdMs: FAILURE_HOLD_MS,
      error: new ShoalError('BACKEND_ERROR', message, { cause: err }),
    })
    log.error({ ns, digest: digest.toString(), code: e.code, err: e.message }, 'backend fetch failed')
  }
}
