/**
 * Gets blobs into the agent's cache through the swarm: metainfo from the trackers, pieces from
 * peers (SHA-1 per piece), then the whole blob's sha256 before it becomes visible. Concurrent
 * requests for one digest share one download; progress is kept for the API and the demo.
 *
 * Resume: every download in progress has an entry in the resume journal (namespace, metainfo),
 * and the store keeps its pieces and which of them survive a crash (openDownload), so a restarted
 * agent continues where it stopped by itself (`resume()` at start); a client asking meanwhile
 * joins the resumed download.
 *
 * Disk space: a download that cannot fit is refused before it writes anything (space.ts). A
 * download that fails for good (anything but the agent stopping) releases its space: the partial
 * data, bitfield and journal entry are deleted, so a full disk does not stay full, a retry starts
 * clean, and a restart finds nothing to resurrect; resume() also deletes partial downloads that
 * have no journal entry (left by an agent that died between the two).
 */
import { type Digest, type InfoHash, MetaInfo } from '../../core/index.js'
import { ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { BlobStore } from '../../store/index.js'
import type { DownloadStats, TorrentEngine } from '../../torrent/index.js'
import type { TrackerSet } from '../../tracker/client/index.js'
import type { DownloadProgress } from '../client/index.js'
import { CorruptPieces, type CorruptReportSink } from './corruption.js'
import { IngressCaps } from './ingress-caps.js'
import type { ResumeJournal } from './journal.js'
import { fetchMetaInfo, layoutOf } from './metainfo.js'
import { ProgressTable, pickStats } from './progress.js'
import { DiskSpace, withReleased } from './space.js'
import { StallWatchdog } from './stall.js'

export { layoutOf } from './metainfo.js'

/** What Downloads needs of the engine and the trackers (narrow, so tests can stand in). */
export type SwarmEngine = Pick<TorrentEngine, 'download' | 'seed' | 'remove' | 'stats'> &
  Partial<Pick<TorrentEngine, 'setIngressCap'>>
/** Metainfo, and (when it can) where bad pieces from origins are reported: the TrackerSet. */
export type MetaInfoSource = Pick<TrackerSet, 'metainfo'> & Partial<CorruptReportSink>

export interface DownloadsOptions {
  store: BlobStore
  engine: SwarmEngine
  /** The trackers (a TrackerSet: its own failover); metainfo is retried here while "not yet". */
  trackers: MetaInfoSource
  logger: Logger
  stallMs: number
  /** Without a journal nothing is resumed at start (a pull still resumes from the bitfield). */
  journal?: ResumeJournal
  /** Bytes every download must leave free on the data folder's file system (default 0). */
  minFreeBytes?: number
  /** A verified blob entered the cache (the cache policy starts its clock of last use). */
  onCached?: (digest: Digest, size: number) => void
}

export class Downloads {
  private readonly inflight = new Map<string, Promise<void>>()
  private readonly progress: ProgressTable
  /** Storage handed to the engine per digest, closed when the blob is dropped or the agent stops. */
  private readonly open = new Map<string, { close(): Promise<void> }>()
  /** The torrent each cached blob is seeded as, for its upload count (the cache policy's "served"). */
  private readonly seeding = new Map<string, InfoHash>()
  private readonly store: BlobStore
  private readonly engine: SwarmEngine
  private readonly trackers: MetaInfoSource
  private readonly log: Logger
  private readonly stallMs: number
  private readonly journal: ResumeJournal | undefined
  /** Aborted by stop(): downloads end, and keep their journal entries for the next start. */
  private readonly stopping = new AbortController()
  /** Per download in flight, aborted by release() (the blob is being deleted). */
  private readonly cancels = new Map<string, AbortController>()
  private readonly space: DiskSpace
  private readonly onCached: ((digest: Digest, size: number) => void) | undefined
  /** Per-download ingress caps clients asked for (a job's bandwidth class). */
  private readonly caps: IngressCaps

  constructor(opts: DownloadsOptions) {
    this.store = opts.store
    this.engine = opts.engine
    this.trackers = opts.trackers
    this.log = opts.logger
    this.stallMs = opts.stallMs
    this.journal = opts.journal
    this.space = new DiskSpace(opts.store, opts.minFreeBytes ?? 0)
    this.onCached = opts.onCached
    this.progress = new ProgressTable((infoHash) => this.engine.stats(infoHash))
    this.caps = new IngressCaps((infoHash, rate) => this.engine.setIngressCap?.(infoHash, rate))
  }

  /**
   * Resolves once the blob is verified in the local cache. `ingressBytesPerSec`: this request's
   * cap on the download's reads from peers (see IngressCaps for requests that share one).
   */
  async ensure(ns: string, digest: Digest, signal?: AbortSignal, ingressBytesPerSec?: number): Promise<void> {
    if (await this.store.stat(digest)) return
    const running = this.inflight.get(digest.hex)
    this.caps.ask(digest, ingressBytesPerSec, running === undefined)
    const pending = running ?? this.start(ns, digest)
    if (!signal) return pending
    // The caller may give up (client went away); the shared download carries on for others.
    await Promise.race([
      pending,
      new Promise<never>((_, reject) => {
        if (signal.aborted) reject(new ShoalError('ABORTED', 'request aborted'))
        signal.addEventListener('abort', () => reject(new ShoalError('ABORTED', 'request aborted')), {
          once: true,
        })
      }),
    ])
  }

  /**
   * Restarts, in the background, every download the journal says was interrupted (a crash, a
   * kill, a stop), from the pieces already on disk. Call after the engine started and before
   * the API serves, so a client asking for one of these blobs joins its download.
   */
  async resume(): Promise<number> {
    if (!this.journal) return 0
    const entries = await this.journal.list()
    await this.dropOrphans(new Set(entries.map((e) => e.digest.hex)))
    let n = 0
    for (const { namespace, digest, meta } of entries) {
      if (this.inflight.has(digest.hex)) continue
      if (await this.store.stat(digest)) {
        // Finished, but the agent died before the entry was removed.
        await this.journal.remove(digest)
        continue
      }
      // Failures are logged by download(); nobody may be waiting for this one.
      this.start(namespace, digest, meta).catch(() => undefined)
      n++
    }
    if (n > 0) this.log.info({ downloads: n }, 'resuming interrupted downloads')
    return n
  }

  /**
   * Deletes partial downloads the journal does not name: a download that failed for good, or
   * whose journal entry could not be written, must not hold disk space across a restart.
   */
  private async dropOrphans(live: ReadonlySet<string>): Promise<void> {
    let count = 0
    let released = 0
    for (const digest of await this.store.listDownloads()) {
      if (live.has(digest.hex) || this.inflight.has(digest.hex)) continue
      released += await this.store.discardDownload(digest)
      count++
    }
    if (count > 0)
      this.log.info(
        { downloads: count, bytes: released },
        'deleted partial downloads left without a resume entry',
      )
  }

  status(digest: Digest): DownloadProgress | undefined {
    return this.progress.status(digest)
  }

  /** Starts seeding every cached blob whose metainfo sidecar is present (after a restart). */
  async reseedCache(): Promise<number> {
    let n = 0
    for await (const digest of this.store.list()) if (await this.reseed(digest)) n++
    return n
  }

  /**
   * Seeds one cached blob from its sidecar (at start, or when an eviction was given up after
   * the engine let go of it); false when it has no sidecar or cannot be seeded.
   */
  async reseed(digest: Digest): Promise<boolean> {
    if (this.open.has(digest.hex)) return true
    try {
      const raw = await this.store.readMetaInfo(digest)
      if (!raw) return false
      const meta = MetaInfo.parse(raw)
      const seed = await this.store.openSeed(digest, layoutOf(meta))
      this.open.set(digest.hex, seed)
      this.seeding.set(digest.hex, meta.infoHash)
      this.engine.seed(meta, seed)
      return true
    } catch (err) {
      this.log.warn(
        { digest: digest.toString(), err: toShoalError(err).message },
        'cannot re-seed cached blob',
      )
      return false
    }
  }

  /** Bytes uploaded to peers by the blob's torrent; undefined when it is not seeded. */
  bytesUploaded(digest: Digest): number | undefined {
    const infoHash = this.seeding.get(digest.hex)
    return infoHash ? (this.engine.stats(infoHash)?.bytesUploaded ?? 0) : undefined
  }

  /**
   * Stops serving a blob (cancelling its download if one is running, at any stage) and closes
   * its file, then deletes its partial download and journal entry, before the blob is deleted.
   * `meta` comes from the cache's sidecar when the blob is complete. Returns the partial bytes
   * released.
   */
  async release(digest: Digest, meta: MetaInfo | undefined): Promise<number> {
    const partial = await this.store.downloadBytes(digest).catch(() => 0)
    this.cancels
      .get(digest.hex)
      ?.abort(
        new ShoalError('ABORTED', `download of ${digest} cancelled: the blob was deleted from this agent`),
      )
    const infoHash =
      meta?.infoHash ?? this.seeding.get(digest.hex) ?? this.progress.get(digest)?.meta?.infoHash
    this.seeding.delete(digest.hex)
    if (infoHash) this.engine.remove(infoHash)
    await this.inflight.get(digest.hex)?.catch(() => undefined)
    const file = this.open.get(digest.hex)
    this.open.delete(digest.hex)
    this.progress.delete(digest)
    await this.journal?.remove(digest)
    await file?.close()
    // A cancelled download deleted its partial itself; one no download held is deleted here.
    await this.store.discardDownload(digest)
    return partial
  }

  /**
   * Ends every download in flight (they fail with ABORTED; their journal entries stay, so the
   * next start resumes them) and waits for them to put their files away. Before engine.stop().
   */
  async stop(): Promise<void> {
    this.stopping.abort(new ShoalError('ABORTED', 'the agent is stopping'))
    await Promise.allSettled([...this.inflight.values()])
  }

  /** Closes every file handed to the engine; call after the engine has stopped. */
  async closeAll(): Promise<void> {
    const files = [...this.open.values()]
    this.open.clear()
    this.seeding.clear()
    await Promise.all(files.map((f) => f.close().catch(() => undefined)))
  }

  private start(ns: string, digest: Digest, known?: MetaInfo): Promise<void> {
    const pending = this.download(ns, digest, known).finally(() => {
      this.inflight.delete(digest.hex)
      this.caps.finished(digest)
    })
    this.inflight.set(digest.hex, pending)
    return pending
  }

  private async download(ns: string, digest: Digest, known: MetaInfo | undefined): Promise<void> {
    const started = Date.now()
    const entry = this.progress.start(digest, started)
    const sink = this.trackers.reportCorrupt ? (this.trackers as CorruptReportSink) : undefined
    const corrupt = new CorruptPieces(ns, digest, sink, this.log)
    const watchdog = new StallWatchdog(this.stallMs, digest, () => corrupt.last)
    const cancel = new AbortController()
    this.cancels.set(digest.hex, cancel)
    // Fails at once when the origin says no good copy is left (BLOB_CORRUPT).
    const signal = AbortSignal.any([watchdog.signal, this.stopping.signal, cancel.signal, corrupt.signal])
    let journaled = false
    let finished = false
    try {
      if (this.stopping.signal.aborted) throw this.stopping.signal.reason
      const meta = known ?? (await fetchMetaInfo(this.trackers, ns, digest, signal, this.log))
      entry.meta = meta
      entry.pieceCount = meta.pieceCount
      entry.size = meta.length
      // Before the journal entry and the sparse file: a blob that cannot fit leaves no trace.
      await this.space.claim(digest, meta.length)
      // Before the first piece lands: a download whose pieces are on disk always has its entry.
      journaled = known !== undefined || (await this.journalStart(ns, digest, meta))
      // With the metainfo's SHA-1s the store also keeps pieces written after its last checkpoint.
      const file = await this.store.openDownload(digest, meta)
      this.space.track(digest, () => Math.min(meta.length, file.missingCount() * meta.pieceLength))
      entry.resumedPieces = meta.pieceCount - file.missingCount()
      entry.piecesDone = entry.resumedPieces
      this.log.info(
        {
          digest: digest.toString(),
          size: meta.length,
          pieces: meta.pieceCount,
          resumedPieces: entry.resumedPieces,
          infoHash: meta.infoHash.hex,
        },
        known ? 'download resumed after a restart' : 'download started',
      )
      watchdog.watch(() => this.engine.stats(meta.infoHash))
      const ingressBytesPerSec = this.caps.started(digest, meta.infoHash)
      // Kept on the entry after the download ends: what the API shows it was held to.
      if (ingressBytesPerSec !== undefined) entry.ingressCapBytesPerSec = ingressBytesPerSec
      let stats: DownloadStats
      try {
        stats = await this.engine.download(meta, file, {
          signal,
          onBadPiece: corrupt.onBadPiece,
          ingressBytesPerSec,
        })
        // Whole-blob check before the blob becomes visible; the engine keeps serving pieces meanwhile.
        await file.finish(digest)
        finished = true
      } catch (err) {
        // Drop the torrent too: a retry must start from a fresh file, not the discarded one.
        this.engine.remove(meta.infoHash)
        await file.close().catch(() => undefined)
        // The first cause: a full disk, a stall, corrupt data or a deletion, rather than the engine's echo of it.
        throw cancel.signal.aborted
          ? cancel.signal.reason
          : (file.failure ?? watchdog.reason ?? corrupt.reason ?? err)
      }
      // The same open file keeps serving pieces to other agents until the blob is dropped.
      this.open.set(digest.hex, file)
      this.seeding.set(digest.hex, meta.infoHash)
      try {
        await this.store.writeMetaInfo(digest, meta.raw)
      } finally {
        // After the sidecar (an eviction reads it); in the cache, and so indexed, either way.
        this.onCached?.(digest, meta.length)
      }
      if (journaled) await this.journal?.remove(digest)
      Object.assign(entry, pickStats(stats, entry.resumedPieces), {
        state: 'done',
        piecesDone: meta.pieceCount,
        finishedAt: Date.now(),
      })
      this.log.info(
        {
          digest: digest.toString(),
          ms: Date.now() - started,
          fromOrigins: stats.bytesFromOrigins,
          fromAgents: stats.bytesFromAgents,
          resumedPieces: entry.resumedPieces,
        },
        'download verified',
      )
    } catch (err) {
      const stopping = this.stopping.signal.aborted
      let e = stopping
        ? toShoalError(this.stopping.signal.reason)
        : toShoalError(
            cancel.signal.aborted ? cancel.signal.reason : (watchdog.reason ?? corrupt.reason ?? err),
          )
      if (stopping) {
        this.log.info(
          { digest: digest.toString() },
          'download interrupted by shutdown; it resumes at the next start',
        )
      } else {
        // Ended for good (a client saw the error): a restart must not pick it up again, and
        // its space goes back to the disk.
        const released = await this.forget(digest, finished)
        e = withReleased(e, released)
        this.log.warn(
          { digest: digest.toString(), code: e.code, err: e.message, releasedBytes: released },
          'download failed',
        )
      }
      Object.assign(entry, { state: 'failed', error: e.message, finishedAt: Date.now() })
      throw e
    } finally {
      corrupt.close()
      watchdog.stop()
      this.space.release(digest)
      if (this.cancels.get(digest.hex) === cancel) this.cancels.delete(digest.hex)
    }
  }

  /** Deletes what a failed download left (journal entry, partial data); returns bytes released. */
  private async forget(digest: Digest, finished: boolean): Promise<number> {
    await this.journal?.remove(digest)
    if (finished) return 0 // in the cache already; only its sidecar failed
    try {
      return await this.store.discardDownload(digest)
    } catch (err) {
      this.log.warn(
        { digest: digest.toString(), err: toShoalError(err).message },
        'cannot delete the partial download; it is deleted at the next start',
      )
      return 0
    }
  }

  /** Writes the journal entry; a failure only costs the resume, so it does not fail the download. */
  private async journalStart(ns: string, digest: Digest, meta: MetaInfo): Promise<boolean> {
    if (!this.journal) return false
    try {
      await this.journal.record(ns, digest, meta)
      return true
    } catch (err) {
      this.log.warn(
        { digest: digest.toString(), err: toShoalError(err).message },
        'cannot journal the download; it will not resume by itself after a restart',
      )
      return false
    }
  }
}
