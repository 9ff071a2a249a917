/** Client of the agent's local HTTP API (used by PullCLI and the demo). */
import type { Readable } from 'node:stream'
import { Digest, type Tag } from '../../core/index.js'
import { HttpClient, urlPath } from '../../http/index.js'

export interface DownloadProgress {
  digest: string
  state: 'downloading' | 'done' | 'failed' | 'cached'
  /** Verified pieces, those found on disk when the download (re)started included. */
  piecesDone: number
  pieceCount: number
  /** Pieces already on disk when the download started (a resume); bytes* count only the rest. */
  resumedPieces?: number
  size: number
  bytesFromOrigins: number
  bytesFromAgents: number
  bytesUploaded: number
  startedAt?: number
  finishedAt?: number
  error?: string
}

export class AgentClient {
  readonly http: HttpClient

  constructor(baseUrl: string, opts: { timeoutMs?: number } = {}) {
    this.http = new HttpClient(baseUrl, { name: 'agent', timeoutMs: opts.timeoutMs ?? 30_000 })
  }

  async resolve(tag: Tag, signal?: AbortSignal): Promise<Digest> {
    const body = await this.http.json<{ digest: string }>('GET', urlPath`/tags/${tag.toString()}`, { signal })
    return Digest.parse(body.digest)
  }

  /**
   * Streams the blob; the agent downloads it through the swarm first when it does not have it,
   * so the answer may take as long as the download (`timeoutMs` bounds the wait for headers).
   */
  async blob(
    ns: string,
    digest: Digest,
    opts: { signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<{ size: number; body: Readable }> {
    const res = await this.http.request('GET', urlPath`/namespace/${ns}/blobs/${digest}`, opts)
    return { size: Number(res.headers['content-length'] ?? -1), body: res.body }
  }

  async progress(digest: Digest, signal?: AbortSignal): Promise<DownloadProgress> {
    return this.http.json<DownloadProgress>('GET', urlPath`/downloads/${digest}`, { signal })
  }

  async remove(digest: Digest, signal?: AbortSignal): Promise<void> {
    await this.http.status('DELETE', urlPath`/blobs/${digest}`, { signal, accept: [404] })
  }
}
