/** Client of the agent's local HTTP API (used by PullCLI and the demo). */
import type { Readable } from 'node:stream'
import { answeredMeta, pageQuery } from '../../build-index/client/index.js'
import { Digest, type Tag, type TagType } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import { HttpClient, urlPath } from '../../http/index.js'
import { INGRESS_CAP_HEADER } from '../server/ingress-caps.js'

export interface DownloadProgress {
  digest: string
  state: 'downloading' | 'done' | 'failed' | 'cached'
  /** Verified pieces, those found on disk when the download (re)started included. */
  piecesDone: number
  pieceCount: number
  /** Pieces already on disk when the download started (a resume); bytes* count only the rest. */
  resumedPieces?: number
  size: number
  /** Block bytes received this run, verified or not: moves within a piece (up to 16 MiB). */
  bytesReceived?: number
  /** Peers connected in this download now. */
  peers?: number
  bytesFromOrigins: number
  bytesFromAgents: number
  bytesUploaded: number
  /**
   * Piece bytes received this run by the zone the sending peer declared ('(none)': no zone),
   * counted on the wire (a block later found in a bad piece included).
   */
  bytesByZone?: Record<string, number>
  /** Of those, bytes from peers in a zone other than this agent's (0 when it has no zone). */
  bytesCrossZone?: number
  startedAt?: number
  finishedAt?: number
  error?: string
  /** The download's own cap on reads from peers, bytes/s, when a client asked for one (0 = none). */
  ingressCapBytesPerSec?: number
}

/** A tag as the agent resolved it. */
export interface ResolvedTagInfo {
  tag: string
  digest: Digest
  type?: TagType
  desc?: string
  mode?: number
  mtimeMs?: number
  /** build-index: answered now; cache: build-index was unreachable, the agent's tag cache answered. */
  source: 'build-index' | 'cache'
}

export class AgentClient {
  readonly http: HttpClient
  /** Sent with blob requests: the agent caps the blob's download from peers to it (bytes/s). */
  private readonly capHeaders: Record<string, string> | undefined

  /**
   * `ingressBytesPerSec`: the cap (0 = unlimited) on the agent's download of every blob asked
   * for through this client, on top of the agent's own caps (a job's bandwidth class).
   * `token`: sent as "Authorization: Bearer" (an agent whose API is bound beyond loopback needs one).
   */
  constructor(
    baseUrl: string,
    opts: { timeoutMs?: number; ingressBytesPerSec?: number; token?: string } = {},
  ) {
    this.http = new HttpClient(baseUrl, {
      name: 'agent',
      timeoutMs: opts.timeoutMs ?? 30_000,
      ...(opts.token === undefined ? {} : { headers: { authorization: `Bearer ${opts.token}` } }),
    })
    const cap = opts.ingressBytesPerSec
    this.capHeaders = cap === undefined ? undefined : { [INGRESS_CAP_HEADER]: String(cap) }
  }

  async resolve(tag: Tag, signal?: AbortSignal): Promise<Digest> {
    return (await this.resolveInfo(tag, signal)).digest
  }

  /**
   * The tag's digest and meta, and where the agent got them: an immutable version it resolved
   * before still resolves (source 'cache') while build-index is unreachable. TAG_NOT_FOUND when
   * there is no such tag; UNAVAILABLE / TIMEOUT when build-index cannot answer and the agent
   * cannot either (always so for `latest`).
   */
  async resolveInfo(tag: Tag, signal?: AbortSignal): Promise<ResolvedTagInfo> {
    const body = await this.http.json<{
      tag: string
      digest: string
      type?: unknown
      desc?: unknown
      mode?: unknown
      mtimeMs?: unknown
      source?: unknown
    }>('GET', urlPath`/tags/${tag.toString()}`, { signal })
    // An agent from before the tag cache sends no source: it always asked build-index.
    const source = body.source ?? 'build-index'
    if (source !== 'build-index' && source !== 'cache')
      throw new ShoalError('UPSTREAM_ERROR', 'the agent returned an unknown resolve source')
    return {
      tag: body.tag ?? tag.toString(),
      digest: Digest.parse(body.digest),
      ...answeredMeta(body, 'the agent'),
      source,
    }
  }

  /** One page of the tags starting with the raw `prefix` ('' for all), from build-index through the agent. */
  async list(
    prefix: string,
    opts: { after?: string; limit?: number; signal?: AbortSignal } = {},
  ): Promise<{ tags: string[]; next?: string }> {
    const path = prefix === '' ? '/list/' : urlPath`/list/${prefix}`
    const body = await this.http.json<{ tags: string[]; next?: string }>('GET', path + pageQuery(opts), {
      signal: opts.signal,
    })
    return body.next === undefined ? { tags: body.tags } : { tags: body.tags, next: body.next }
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
    const res = await this.http.request('GET', urlPath`/namespace/${ns}/blobs/${digest}`, {
      ...opts,
      headers: this.capHeaders,
    })
    return { size: Number(res.headers['content-length'] ?? -1), body: res.body }
  }

  /**
   * Where the verified blob is in the agent's cache (downloaded first when missing), for a
   * client on the same host to copy with the kernel. NOT_FOUND from an agent without the route.
   */
  async blobFile(
    ns: string,
    digest: Digest,
    opts: { signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<{ size: number; path: string }> {
    const body = await this.http.json<{ size?: unknown; path?: unknown }>(
      'GET',
      urlPath`/namespace/${ns}/blobs/${digest}/file`,
      { ...opts, headers: this.capHeaders },
    )
    if (typeof body.path !== 'string' || !body.path.startsWith('/') || !Number.isSafeInteger(body.size))
      throw new ShoalError(
        'UPSTREAM_ERROR',
        `the agent at ${this.http.baseUrl} answered an invalid blob location`,
      )
    return { size: body.size as number, path: body.path }
  }

  async progress(digest: Digest, signal?: AbortSignal): Promise<DownloadProgress> {
    return this.http.json<DownloadProgress>('GET', urlPath`/downloads/${digest}`, { signal })
  }

  async remove(digest: Digest, signal?: AbortSignal): Promise<void> {
    await this.http.status('DELETE', urlPath`/blobs/${digest}`, { signal, accept: [404] })
  }
}
