/**
 * What the agent's API shows of its downloads (GET /downloads/:digest): one entry per download,
 * with the engine's live counts while it runs. Bounded: the oldest finished entries go first.
 */
import type { Digest, InfoHash, MetaInfo } from '../../core/index.js'
import type { DownloadStats } from '../../torrent/index.js'
import type { DownloadProgress } from '../client/index.js'

/** An entry, with the metainfo once known (kept back from the API). */
export type Progress = DownloadProgress & { meta?: MetaInfo }

const MAX_ENTRIES = 1000

export class ProgressTable {
  private readonly entries = new Map<string, Progress>()

  /** `stats`: the engine's counts of a torrent it runs (TorrentEngine.stats). */
  constructor(private readonly stats: (infoHash: InfoHash) => DownloadStats | undefined) {}

  /** A new entry for a download of `digest` started at `startedAt`, replacing an earlier one. */
  start(digest: Digest, startedAt: number): Progress {
    const entry: Progress = {
      digest: digest.toString(),
      state: 'downloading',
      piecesDone: 0,
      pieceCount: 0,
      size: 0,
      bytesFromOrigins: 0,
      bytesFromAgents: 0,
      bytesUploaded: 0,
      startedAt,
    }
    this.entries.delete(digest.hex)
    this.entries.set(digest.hex, entry)
    if (this.entries.size > MAX_ENTRIES)
      for (const [hex, p] of this.entries) {
        if (p.state !== 'downloading') this.entries.delete(hex)
        if (this.entries.size <= MAX_ENTRIES) break
      }
    return entry
  }

  get(digest: Digest): Progress | undefined {
    return this.entries.get(digest.hex)
  }

  delete(digest: Digest): void {
    this.entries.delete(digest.hex)
  }

  /** The API's view: the entry without its metainfo, live counts while downloading. */
  status(digest: Digest): DownloadProgress | undefined {
    const p = this.entries.get(digest.hex)
    if (!p) return undefined
    const { meta, ...rest } = p
    if (p.state === 'downloading' && meta) {
      const s = this.stats(meta.infoHash)
      if (s) Object.assign(rest, pickStats(s, p.resumedPieces ?? 0))
    }
    return rest
  }
}

/** The engine's counts (this run's bytes only) and the pieces done, those resumed included. */
export function pickStats(s: DownloadStats, resumedPieces = 0) {
  return {
    bytesReceived: s.bytesReceived,
    peers: s.peers,
    bytesFromOrigins: s.bytesFromOrigins,
    bytesFromAgents: s.bytesFromAgents,
    bytesUploaded: s.bytesUploaded,
    ...(s.ingressCapBytesPerSec === undefined ? {} : { ingressCapBytesPerSec: s.ingressCapBytesPerSec }),
    bytesByZone: s.bytesByZone,
    bytesCrossZone: s.bytesCrossZone,
    piecesDone: resumedPieces + s.piecesFromOrigins + s.piecesFromAgents,
  }
}
