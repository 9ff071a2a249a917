/**
 * Client of an origin's HTTP API (docs/architecture.md §4). Other daemons talk to origins only
 * through this class, and find the owner origin of a digest with OriginCluster (cluster.ts).
 */
import type { Readable } from 'node:stream'
import { type Digest, MAX_METAINFO_BYTES } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import { HttpClient, type ResponseData, urlPath } from '../../http/index.js'

export { type OriginClientFactory, OriginCluster } from './cluster.js'

export const DEFAULT_CHUNK_SIZE = 16 << 20

/** What POST .../verify answers: the copy was intact, has been restored, or is being fetched. */
export interface VerifyResult {
  digest: string
  state: 'ok' | 'restored' | 'restoring'
  message: string
}

/** What the reporter knows of the bad piece (the origin only logs it). */
export interface VerifyReport {
  piece?: number
  reporter?: string
}

export interface BlobStat {
  size: number
  /** true while the origin is still fetching the blob from its backend (HTTP 202). */
  pending: boolean
}

export class OriginClient {
  readonly http: HttpClient

  constructor(
    readonly baseUrl: string,
    opts: { timeoutMs?: number } = {},
  ) {
    this.http = new HttpClient(baseUrl, { name: 'origin', timeoutMs: opts.timeoutMs })
  }

  /** HEAD the blob: its size, or undefined when this origin does not hold it. */
  async stat(ns: string, digest: Digest, signal?: AbortSignal): Promise<BlobStat | undefined> {
    const res = await this.http.request('HEAD', urlPath`/namespace/${ns}/blobs/${digest}`, {
      signal,
      accept: [404],
    })
    await res.body.dump()
    if (res.statusCode === 404) return undefined
    return { size: Number(res.headers['content-length'] ?? 0), pending: res.statusCode === 202 }
  }

  /** Streams the blob (optionally a byte range, inclusive). */
  async download(
    ns: string,
    digest: Digest,
    opts: { signal?: AbortSignal; start?: number; end?: number } = {},
  ): Promise<Readable> {
    const headers: Record<string, string> = {}
    if (opts.start !== undefined) headers.range = `bytes=${opts.start}-${opts.end ?? ''}`
    const res = await this.http.request('GET', urlPath`/namespace/${ns}/blobs/${digest}`, {
      signal: opts.signal,
      headers,
    })
    await this.refusePending(res, digest)
    return res.body
  }

  /** The bencoded .torrent the origin generated for the blob. */
  async metainfo(ns: string, digest: Digest, signal?: AbortSignal): Promise<Buffer> {
    const res = await this.http.request('GET', urlPath`/namespace/${ns}/blobs/${digest}/metainfo`, { signal })
    await this.refusePending(res, digest)
    return this.http.readBody(res, 'GET', 'metainfo', { maxBytes: MAX_METAINFO_BYTES, signal })
  }

  /** A 202 means the origin is still fetching the blob from its backend: UNAVAILABLE, retry later. */
  private async refusePending(res: ResponseData, digest: Digest): Promise<void> {
    if (res.statusCode !== 202) return
    await res.body.dump()
    throw new ShoalError(
      'UNAVAILABLE',
      `origin ${this.baseUrl} is still fetching ${digest} from its backend; retry shortly`,
    )
  }

  /**
   * Reports a bad piece of the blob from this origin: the origin re-hashes its copy and, when
   * it is corrupt, restores it from the backend before answering (re-verified at most once per
   * its verifyIntervalSeconds). Rejects with BLOB_CORRUPT when the backend's copy is corrupt too.
   * The answer may take as long as hashing and fetching the blob: give a generous `timeoutMs`.
   */
  async verify(
    ns: string,
    digest: Digest,
    report: VerifyReport,
    opts: { signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<VerifyResult> {
    return this.http.json<VerifyResult>('POST', urlPath`/namespace/${ns}/blobs/${digest}/verify`, {
      json: report,
      signal: opts.signal,
      timeoutMs: opts.timeoutMs,
    })
  }

  /**
   * Removes the blob from the origin's cache and backend (namespace `ns`) and stops seeding it.
   * `unlessPushedWithinMs` (GC): refused with BLOB_RECOMMITTED when it was pushed that recently.
   */
  async deleteBlob(
    ns: string,
    digest: Digest,
    signal?: AbortSignal,
    opts: { unlessPushedWithinMs?: number } = {},
  ): Promise<void> {
    const within = opts.unlessPushedWithinMs
    const query = within === undefined ? '' : `?unlessPushedWithinMs=${Math.max(0, Math.ceil(within))}`
    await this.http.status('DELETE', `${urlPath`/namespace/${ns}/blobs/${digest}`}${query}`, { signal })
  }

  /**
   * Asks this origin (an owner of the digest) to hold the blob, copying it from the origin
   * `from` (host:port, a ring member) or else from its backend: `cached` when it held it
   * already, `copied` when it copied it before answering (it waits a few seconds), `fetching`
   * while it still copies (stat() answers pending until it is done).
   */
  async replicate(
    digest: Digest,
    req: { namespace: string; from: string },
    signal?: AbortSignal,
  ): Promise<{ state: 'cached' | 'copied' | 'fetching' }> {
    const body = await this.http.json<{ state?: unknown }>('POST', urlPath`/blobs/${digest}/replicate`, {
      json: req,
      signal,
    })
    const state = body?.state
    if (state !== 'cached' && state !== 'copied' && state !== 'fetching')
      throw new ShoalError('UPSTREAM_ERROR', `origin ${this.baseUrl} answered a replicate without a state`)
    return { state }
  }

  /** Origins (host:port of their HTTP servers) that own the digest, first is primary. */
  async locations(digest: Digest, signal?: AbortSignal): Promise<string[]> {
    const body = await this.http.json<{ locations: string[] }>('GET', urlPath`/blobs/${digest}/locations`, {
      signal,
    })
    return body.locations
  }

  /**
   * Uploads `size` bytes from `body` as the blob `digest`: start, one PATCH per chunk
   * (Content-Range `start-end`, inclusive), then commit, where the origin verifies the sha256.
   * Resolves `{ existed: true }` without sending anything when the origin already holds it, or
   * once another client's upload of it committed (the origin makes a second upload of a digest
   * wait). `onStarted` runs once this upload is granted, before `body` is read.
   */
  async upload(
    ns: string,
    digest: Digest,
    body: Readable,
    size: number,
    opts: { chunkSize?: number; signal?: AbortSignal; onStarted?: () => void } = {},
  ): Promise<{ existed: boolean }> {
    const signal = opts.signal
    let started: { uid?: string; code?: string }
    for (;;) {
      const start = await this.http.request('POST', urlPath`/namespace/${ns}/blobs/${digest}/uploads`, {
        signal,
        accept: [409],
      })
      started = (await start.body.json()) as { uid?: string; code?: string }
      if (start.statusCode !== 409) break
      if (started.code === 'ALREADY_EXISTS') return { existed: true }
      // Another client is sending this blob; the origin waited for it a while: ask again.
      if (started.code === 'UPLOAD_IN_PROGRESS') continue
      throw new ShoalError(
        'UPLOAD_CONFLICT',
        `origin refused to start an upload of ${digest}: ${started.code}`,
      )
    }
    const uid = started.uid
    if (!uid) throw new ShoalError('UPSTREAM_ERROR', 'origin did not return an upload id')
    opts.onStarted?.()
    const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE
    const path = urlPath`/namespace/${ns}/blobs/${digest}/uploads/${uid}`
    try {
      let offset = 0
      for await (const chunk of chunks(body, chunkSize)) {
        const end = offset + chunk.length - 1
        await this.http.status('PATCH', path, {
          signal,
          body: chunk,
          headers: { 'content-range': `${offset}-${end}`, 'content-type': 'application/octet-stream' },
        })
        offset += chunk.length
      }
      if (offset !== size)
        throw new ShoalError('SIZE_MISMATCH', `read ${offset} bytes of ${digest}; ${size} were announced`)
      // The commit hashes the blob and writes it to the backend before answering: allow time
      // in proportion to its size (20 MiB/s is a slow disk).
      await this.http.status('PUT', path, { signal, timeoutMs: 60_000 + Math.ceil(size / (20 << 20)) * 1000 })
      return { existed: false }
    } catch (err) {
      await this.http.status('DELETE', path, { accept: [404] }).catch(() => undefined)
      throw err
    }
  }
}

/** Re-slices a stream into buffers of exactly `size` bytes (the last may be shorter). */
async function* chunks(body: Readable, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = []
  let have = 0
  for await (const data of body) {
    let buf = data as Buffer
    while (buf.length > 0) {
      const take = Math.min(size - have, buf.length)
      parts.push(buf.subarray(0, take))
      have += take
      buf = buf.subarray(take)
      if (have === size) {
        yield Buffer.concat(parts, have)
        parts = []
        have = 0
      }
    }
  }
  if (have > 0) yield Buffer.concat(parts, have)
}
