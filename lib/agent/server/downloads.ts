/**
 * Gets blobs into the agent's cache through the swarm: metainfo from the tracker, pieces from
 * peers (SHA-1 per piece), then the whole blob's sha256 before it becomes visible. Concurrent
 * requests for one digest share one download; progress is kept for the API and the demo.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { type Digest, MetaInfo } from '../../core/index.js'
import { ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { BlobStore } from '../../store/index.js'
import type { DownloadStats, TorrentEngine } from '../../torrent/index.js'
import type { TrackerClient } from '../../tracker/client/index.js'
import type { DownloadProgress } from '../client/index.js'

/** What Downloads needs of the engine and the trackers (narrow, so tests can stand in). */
export type SwarmEngine = Pick<TorrentEngine, 'download' | 'seed' | 'remove' | 'stats'>
export type MetaInfoSource = Pick<TrackerClient, 'metainfo'>

export class Downloads {
  private readonly inflight = new Map<string, Promise<void>>()
  private readonly progress = new Map<string, Progress>()
  /** Storage handed to the engine per digest, closed when the blob is dropped or the agent stops. */
  private readonly open = new Map<string, { close(): Promise<void> }>()

  constructor(
    private readonly store: BlobStore,
    private readonly engine: SwarmEngine,
    private readonly trackers: MetaInfoSource[],
    private readonly log: Logger,
    private readonly stallMs: number,
  ) {}

  /** Resolves once the blob is verified in the local cache. */
  async ensure(ns: string, digest: Digest, signal?: AbortSignal): Promise<void> {
    if (await this.store.stat(digest)) return
    let pending = this.inflight.get(digest.hex)
    if (!pending) {
      pending = this.download(ns, digest).finally(() => this.inflight.delete(digest.hex))
      this.inflight.set(digest.hex, pending)
    }
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

  status(digest: Digest): DownloadProgress | undefined {
    const p = this.progress.get(digest.hex)
    if (!p) return undefined
    const { meta, ...rest } = p
    if (p.state === 'downloading' && meta) {
      const s = this.engine.stats(meta.infoHash)
      if (s) Object.assign(rest, pickStats(s))
    }
    return rest
  }

  /** Starts seeding every cached blob whose metainfo sidecar is present (after a restart). */
  async reseedCache(): Promise<number> {
    let n = 0
    for await (const digest of this.store.list()) {
      const raw = await this.store.readMetaInfo(digest)
      if (!raw) continue
      try {
        const meta = MetaInfo.parse(raw)
        const seed = await this.store.openSeed(digest, layoutOf(meta))
        this.open.set(digest.hex, seed)
        this.engine.seed(meta, seed)
        n++
      } catch (err) {
        this.log.warn(
          { digest: digest.toString(), err: toShoalError(err).message },
          'cannot re-seed cached blob',
        )
      }
    }
    return n
  }

  /**
   * Stops serving a blob (aborting its download if one is running) and closes its file, before
   * the blob is deleted. `meta` comes from the cache's sidecar when the blob is complete.
   */
  async release(digest: Digest, meta: MetaInfo | undefined): Promise<void> {
    const infoHash = meta?.infoHash ?? this.progress.get(digest.hex)?.meta?.infoHash
    if (infoHash) this.engine.remove(infoHash)
    await this.inflight.get(digest.hex)?.catch(() => undefined)
    const file = this.open.get(digest.hex)
    this.open.delete(digest.hex)
    this.progress.delete(digest.hex)
    await file?.close()
  }

  /** Closes every file handed to the engine; call after the engine has stopped. */
  async closeAll(): Promise<void> {
    const files = [...this.open.values()]
    this.open.clear()
    await Promise.all(files.map((f) => f.close().catch(() => undefined)))
  }

  private async download(ns: string, digest: Digest): Promise<void> {
    const started = Date.now()
    const entry: Progress = {
      digest: digest.toString(),
      state: 'downloading',
      piecesDone: 0,
      pieceCount: 0,
      size: 0,
      bytesFromOrigins: 0,
      bytesFromAgents: 0,
      bytesUploaded: 0,
      startedAt: started,
    }
    this.track(digest, entry)
    const watchdog = new StallWatchdog(this.stallMs, digest)
    try {
      const meta = await this.fetchMetaInfo(ns, digest, watchdog.signal)
      entry.meta = meta
      entry.pieceCount = meta.pieceCount
      entry.size = meta.length
      this.log.info(
        {
          digest: digest.toString(),
          size: meta.length,
          pieces: meta.pieceCount,
          infoHash: meta.infoHash.hex,
        },
        'download started',
      )
      const file = await this.store.openDownload(digest, layoutOf(meta))
      entry.piecesDone = meta.pieceCount - file.missingCount()
      watchdog.watch(() => this.engine.stats(meta.infoHash))
      let stats: DownloadStats
      try {
        stats = await this.engine.download(meta, file, { signal: watchdog.signal })
        // Whole-blob check before the blob becomes visible; the engine keeps serving pieces meanwhile.
        await file.finish(digest)
      } catch (err) {
        // Drop the torrent too: a retry must start from a fresh file, not the discarded one.
        this.engine.remove(meta.infoHash)
        await file.close().catch(() => undefined)
        throw watchdog.reason ?? err
      }
      // The same open file keeps serving pieces to other agents until the blob is dropped.
      this.open.set(digest.hex, file)
      await this.store.writeMetaInfo(digest, meta.raw)
      Object.assign(entry, pickStats(stats), {
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
        },
        'download verified',
      )
    } catch (err) {
      const e = toShoalError(watchdog.reason ?? err)
      Object.assign(entry, { state: 'failed', error: e.message, finishedAt: Date.now() })
      this.log.warn({ digest: digest.toString(), code: e.code, err: e.message }, 'download failed')
      throw e
    } finally {
      watchdog.stop()
    }
  }

  /** Keeps progress for the API; bounded, dropping the oldest finished downloads first. */
  private track(digest: Digest, entry: Progress): void {
    this.progress.delete(digest.hex)
    this.progress.set(digest.hex, entry)
    if (this.progress.size <= MAX_PROGRESS_ENTRIES) return
    for (const [hex, p] of this.progress) {
      if (p.state !== 'downloading') this.progress.delete(hex)
      if (this.progress.size <= MAX_PROGRESS_ENTRIES) break
    }
  }

  /**
   * Metainfo from the first tracker that has it. An origin that is still fetching the blob from
   * its backend answers "unavailable, retry": retry with backoff until the stall deadline.
   */
  private async fetchMetaInfo(ns: string, digest: Digest, signal: AbortSignal): Promise<MetaInfo> {
    let delay = 250
    for (;;) {
      let lastError: ShoalError | undefined
      for (const tracker of this.trackers) {
        try {
          const meta = MetaInfo.parse(await tracker.metainfo(ns, digest, signal))
          if (meta.name !== digest.hex) {
            throw new ShoalError('BAD_METAINFO', `tracker served metainfo named ${meta.name} for ${digest}`)
          }
          return meta
        } catch (err) {
          const e = toShoalError(err)
          if (e.code === 'BLOB_NOT_FOUND' || e.code === 'NOT_FOUND') {
            throw new ShoalError('BLOB_NOT_FOUND', `blob not found: ${digest}`)
          }
          lastError = e
        }
      }
      const retryable = lastError?.code === 'UNAVAILABLE' || lastError?.code === 'TIMEOUT'
      if (!retryable || signal.aborted)
        throw lastError ?? new ShoalError('UNAVAILABLE', 'no tracker configured')
      this.log.debug(
        { digest: digest.toString(), err: lastError?.message, retryInMs: delay },
        'metainfo not available yet',
      )
      await sleep(delay, undefined, { signal }).catch(() => undefined)
      delay = Math.min(delay * 2, 5_000)
    }
  }
}

type Progress = DownloadProgress & { meta?: MetaInfo }

const MAX_PROGRESS_ENTRIES = 1000

/**
 * Fails a download that makes no progress: no verified piece (or, before the first piece, no
 * metainfo) for `stallMs`. A large blob may take as long as it needs while pieces keep coming.
 */
class StallWatchdog {
  private readonly controller = new AbortController()
  private timer: NodeJS.Timeout | undefined
  reason: ShoalError | undefined

  constructor(
    private readonly stallMs: number,
    private readonly digest: Digest,
  ) {
    this.timer = setTimeout(() => this.fire(), stallMs)
    this.timer.unref()
  }

  get signal(): AbortSignal {
    return this.controller.signal
  }

  /** Re-arms the deadline whenever the piece count moves. */
  watch(stats: () => { piecesFromOrigins: number; piecesFromAgents: number } | undefined): void {
    clearTimeout(this.timer)
    let last = -1
    let lastChange = Date.now()
    this.timer = setInterval(
      () => {
        const s = stats()
        const done = s ? s.piecesFromOrigins + s.piecesFromAgents : 0
        if (done !== last) {
          last = done
          lastChange = Date.now()
        } else if (Date.now() - lastChange >= this.stallMs) {
          this.fire()
        }
      },
      Math.min(1000, this.stallMs),
    )
    this.timer.unref()
  }

  stop(): void {
    clearTimeout(this.timer)
    clearInterval(this.timer)
  }

  private fire(): void {
    this.stop()
    this.reason = new ShoalError(
      'TIMEOUT',
      `download of ${this.digest} made no progress for ${Math.round(this.stallMs / 1000)} s (no peer served a piece)`,
    )
    this.controller.abort(this.reason)
  }
}

export function layoutOf(meta: MetaInfo): { length: number; pieceLength: number; pieceCount: number } {
  return { length: meta.length, pieceLength: meta.pieceLength, pieceCount: meta.pieceCount }
}

function pickStats(s: {
  bytesFromOrigins: number
  bytesFromAgents: number
  bytesUploaded: number
  piecesFromOrigins: number
  piecesFromAgents: number
}) {
  return {
    bytesFromOrigins: s.bytesFromOrigins,
    bytesFromAgents: s.bytesFromAgents,
    bytesUploaded: s.bytesUploaded,
    piecesDone: s.piecesFromOrigins + s.piecesFromAgents,
  }
}
