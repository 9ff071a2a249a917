/**
 * Client of the proxy's push API (docs/architecture.md §4), used by PushCLI and RemoveCLI.
 * Tags are sent as one percent-encoded path segment; a string tag is sent as given so the
 * server's INVALID_TAG message reaches the caller.
 */
import { hostname, userInfo } from 'node:os'
import type { Readable } from 'node:stream'
import {
  ACTOR_HEADER,
  answeredMeta,
  historyQuery,
  pageQuery,
  parseHistoryPage,
  type TagHistoryPage,
  type TagRecordAnswer,
} from '../../build-index/client/index.js'
import { Digest, hasTagMeta, type Tag, type TagMeta, type TagType, tagMetaOf } from '../../core/index.js'
import { isShoalError, ShoalError } from '../../errors/index.js'
import { HttpClient, urlPath } from '../../http/index.js'

export interface PushResult {
  /** true when the proxy's origin already held the blob and nothing was uploaded. */
  existed: boolean
  size: number
}

/** A tag's record as the proxy answers GET /proxy/tags/:tag. */
export interface ProxyTagInfo {
  tag: string
  digest: Digest
  createdAt: string
  updatedAt: string
  type?: TagType
  desc?: string
  mode?: number
  mtimeMs?: number
}

/**
 * Who this process is, for the tag history: `user@host`, printable ASCII only (the header's
 * rule), or undefined when neither can be told (the proxy then records our address).
 */
export function defaultActor(): string | undefined {
  let user = ''
  try {
    user = userInfo().username
  } catch {
    user = process.env.USER ?? ''
  }
  const clean = (v: string) => v.replace(/[^\x21-\x7e]/g, '?').slice(0, 100)
  const who = [clean(user), clean(hostname())].filter(Boolean).join('@')
  return who === '' ? undefined : who
}

export class ProxyClient {
  readonly http: HttpClient
  /** Sent as x-shoal-actor with tag writes (PushCLI, RemoveCLI): the tag history names it. */
  readonly actor: string | undefined

  constructor(
    readonly baseUrl: string,
    opts: { timeoutMs?: number; actor?: string } = {},
  ) {
    this.http = new HttpClient(baseUrl, { name: 'proxy', timeoutMs: opts.timeoutMs })
    this.actor = opts.actor ?? defaultActor()
  }

  private actorHeaders(): Record<string, string> | undefined {
    return this.actor ? { [ACTOR_HEADER]: this.actor } : undefined
  }

  /** The blob's size when the origin cluster already holds it (the dedupe check), else undefined. */
  async hasBlob(ns: string, digest: Digest, signal?: AbortSignal): Promise<{ size: number } | undefined> {
    const res = await this.http.request('HEAD', urlPath`/proxy/namespace/${ns}/blobs/${digest}`, {
      signal,
      accept: [404],
    })
    await res.body.dump()
    if (res.statusCode === 404) return undefined
    return { size: Number(res.headers['content-length'] ?? 0) }
  }

  /**
   * Streams `size` bytes from `body` as blob `digest`. The origin verifies the sha256 on commit
   * (DIGEST_MISMATCH when the bytes do not match). When the blob is already stored the proxy
   * answers at once without reading the body: `{ existed: true }`.
   */
  async pushBlob(
    ns: string,
    digest: Digest,
    body: Readable,
    size: number,
    signal?: AbortSignal,
  ): Promise<PushResult> {
    if (!Number.isSafeInteger(size) || size < 0)
      throw new ShoalError('BAD_REQUEST', `invalid blob size ${size}`)
    try {
      const out = await this.http.json<{ existed: boolean; size: number }>(
        'PUT',
        urlPath`/proxy/namespace/${ns}/blobs/${digest}`,
        {
          body,
          signal,
          // Uploads of large blobs take a while before the proxy answers (it answers after the commit).
          timeoutMs: 0,
          // The actor too: the proxy's push event names the pusher (docs/events.md).
          headers: {
            'content-length': String(size),
            'content-type': 'application/octet-stream',
            ...this.actorHeaders(),
          },
        },
      )
      return { existed: out.existed, size: out.size }
    } catch (err) {
      // The proxy answers "already stored" before reading the body and may close the connection
      // while the body is still being sent: the client then sees the connection dropped instead
      // of that answer. Ask once whether the blob is stored before calling it a failure.
      if (!isShoalError(err, 'UNAVAILABLE') || signal?.aborted) throw err
      const stored = await this.hasBlob(ns, digest, signal).catch(() => undefined)
      if (stored?.size === size) return { existed: true, size }
      throw err
    } finally {
      // When the proxy answered early (existed) the rest of the stream was never read: close it.
      if (!body.destroyed) body.destroy()
    }
  }

  /**
   * Points the tag at the digest; `meta` (type, desc) is stored with it. TAG_CONFLICT when an
   * immutable version already points elsewhere, BAD_REQUEST for a meta the proxy refuses.
   */
  async putTag(
    tag: Tag | string,
    digest: Digest,
    opts: AbortSignal | { ns?: string; signal?: AbortSignal; meta?: TagMeta } = {},
  ): Promise<{ tag: string; digest: Digest; result: string }> {
    const { ns, signal, meta } =
      opts instanceof AbortSignal ? { ns: undefined, signal: opts, meta: undefined } : opts
    const query = ns ? `?ns=${encodeURIComponent(ns)}` : ''
    const out = await this.http.json<{ tag: string; digest: string; result: string }>(
      'PUT',
      urlPath`/proxy/tags/${String(tag)}/digest/${digest}` + query,
      { signal, headers: this.actorHeaders(), ...(hasTagMeta(meta) ? { json: tagMetaOf(meta) } : {}) },
    )
    return { tag: out.tag, digest: Digest.parse(out.digest), result: out.result }
  }

  /**
   * The tag's record (digest, timestamps, meta), or undefined when there is no such tag: what a
   * push checks before uploading, to refuse an immutable version that points elsewhere.
   */
  async tagInfo(tag: Tag | string, signal?: AbortSignal): Promise<ProxyTagInfo | undefined> {
    let out: TagRecordAnswer
    try {
      out = await this.http.json('GET', urlPath`/proxy/tags/${String(tag)}`, { signal })
    } catch (err) {
      if (isShoalError(err, 'TAG_NOT_FOUND')) return undefined
      throw err
    }
    return {
      tag: out.tag,
      digest: Digest.parse(out.digest),
      createdAt: out.createdAt,
      updatedAt: out.updatedAt,
      ...answeredMeta(out, 'proxy'),
    }
  }

  /** One page of the tags starting with the raw `prefix` ('' for all); pass `next` back as `after`. */
  async list(
    prefix: string,
    opts: { after?: string; limit?: number; signal?: AbortSignal } = {},
  ): Promise<{ tags: string[]; next?: string }> {
    const path = prefix === '' ? '/proxy/list/' : urlPath`/proxy/list/${prefix}`
    const body = await this.http.json<{ tags: string[]; next?: string }>('GET', path + pageQuery(opts), {
      signal: opts.signal,
    })
    return body.next === undefined ? { tags: body.tags } : { tags: body.tags, next: body.next }
  }

  /** One page of the tag's history through the proxy, newest first; `next` back as `after`. */
  async history(
    tag: Tag | string,
    opts: { after?: number; limit?: number; signal?: AbortSignal } = {},
  ): Promise<TagHistoryPage> {
    const body = await this.http.json<unknown>(
      'GET',
      urlPath`/proxy/tags/${String(tag)}/history` + historyQuery(opts),
      { signal: opts.signal },
    )
    return parseHistoryPage(body, 'proxy')
  }

  /** The digest the tag points at; TAG_NOT_FOUND when there is no such tag. */
  async getTag(tag: Tag | string, signal?: AbortSignal): Promise<Digest> {
    const out = await this.http.json<{ digest: string }>('GET', urlPath`/proxy/tags/${String(tag)}`, {
      signal,
    })
    return Digest.parse(out.digest)
  }

  /** Removes the tag (the blob stays; garbage collection is separate); TAG_NOT_FOUND when absent. */
  async deleteTag(tag: Tag | string, signal?: AbortSignal): Promise<void> {
    await this.http.status('DELETE', urlPath`/proxy/tags/${String(tag)}`, {
      signal,
      headers: this.actorHeaders(),
    })
  }
}
