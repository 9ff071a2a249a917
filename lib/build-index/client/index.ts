/**
 * Client of the build-index HTTP API (docs/architecture.md §4). Other daemons (proxy, agent) talk
 * to build-index only through this class. Tags are sent as one percent-encoded path segment;
 * a string tag is sent as given, so the server's INVALID_TAG message reaches the caller.
 */
import {
  Digest,
  hasTagMeta,
  parseTagMeta,
  printable,
  TAG_META_KEYS,
  type Tag,
  type TagMeta,
  type TagType,
  tagMetaOf,
} from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import { HttpClient, urlPath } from '../../http/index.js'

export interface PutTagResult {
  tag: string
  digest: Digest
  /** created: new tag; moved: `latest` now points elsewhere; unchanged: it already pointed there. */
  result: 'created' | 'moved' | 'unchanged'
  /** The digest `latest` pointed at before a move. */
  previous?: string
}

export interface TagInfo {
  tag: string
  digest: Digest
  createdAt: string
  updatedAt: string
  /** The tag's meta (lib/core/tag-meta.ts); absent when it was put without. */
  type?: TagType
  desc?: string
  mode?: number
  mtimeMs?: number
}

/** A tag record as build-index (and the proxy) answer it; the meta fields are checked by answeredMeta. */
export interface TagRecordAnswer {
  tag: string
  digest: string
  createdAt: string
  updatedAt: string
  type?: unknown
  desc?: unknown
  mode?: unknown
  mtimeMs?: unknown
}

/** One change of a tag (GET /tags/:tag/history). */
export interface TagHistoryEntry {
  /** Per tag, increasing; pass the last one of a page as `after` for older entries. */
  seq: number
  at: string
  /** Who: the x-shoal-actor the writer sent, else its address. */
  actor: string
  action: 'created' | 'moved' | 'deleted'
  from?: string
  to?: string
}

export interface TagHistoryPage {
  tag: string
  /** Newest first. */
  entries: TagHistoryEntry[]
  next?: number
}

/** The header naming who makes a tag write (recorded in the tag's history). */
export const ACTOR_HEADER = 'x-shoal-actor'

export class BuildIndexClient {
  readonly http: HttpClient

  constructor(
    readonly baseUrl: string,
    opts: { timeoutMs?: number } = {},
  ) {
    this.http = new HttpClient(baseUrl, { name: 'build-index', timeoutMs: opts.timeoutMs })
  }

  /**
   * Points `tag` at `digest`. Throws TAG_CONFLICT (a version other than latest already points
   * elsewhere), BLOB_NOT_FOUND (push the blob first), INVALID_TAG / INVALID_DIGEST, and
   * BAD_REQUEST for a meta the server refuses. `meta` goes as the JSON body (none when empty).
   */
  async putTag(
    tag: Tag | string,
    digest: Digest,
    opts: { ns?: string; signal?: AbortSignal; meta?: TagMeta; actor?: string } = {},
  ): Promise<PutTagResult> {
    const query = opts.ns ? `?ns=${encodeURIComponent(opts.ns)}` : ''
    const body = await this.http.json<{
      tag: string
      digest: string
      result: PutTagResult['result']
      previous?: string
    }>('PUT', urlPath`/tags/${String(tag)}/digest/${digest}` + query, {
      signal: opts.signal,
      headers: actorHeaders(opts.actor),
      ...(hasTagMeta(opts.meta) ? { json: tagMetaOf(opts.meta) } : {}),
    })
    const out: PutTagResult = { tag: body.tag, digest: parseDigest(body.digest), result: body.result }
    if (body.previous) out.previous = body.previous
    return out
  }

  /** The digest the tag points at; TAG_NOT_FOUND when there is no such tag. */
  async getTag(tag: Tag | string, signal?: AbortSignal): Promise<Digest> {
    return (await this.tagInfo(tag, signal)).digest
  }

  /** The whole tag record (timestamps and meta included). */
  async tagInfo(tag: Tag | string, signal?: AbortSignal): Promise<TagInfo> {
    const body = await this.http.json<TagRecordAnswer>('GET', urlPath`/tags/${String(tag)}`, { signal })
    return {
      tag: body.tag,
      digest: parseDigest(body.digest),
      createdAt: body.createdAt,
      updatedAt: body.updatedAt,
      ...answeredMeta(body, 'build-index'),
    }
  }

  async hasTag(tag: Tag | string, signal?: AbortSignal): Promise<boolean> {
    const status = await this.http.status('HEAD', urlPath`/tags/${String(tag)}`, { signal, accept: [404] })
    return status !== 404
  }

  /**
   * Removes the tag (not the blob); TAG_NOT_FOUND when absent. A version other than latest
   * leaves a tombstone; `purge` removes it too (FORBIDDEN unless the build-index allows it).
   */
  async deleteTag(
    tag: Tag | string,
    opts: AbortSignal | { purge?: boolean; signal?: AbortSignal; actor?: string } = {},
  ): Promise<void> {
    const { purge, signal, actor } =
      opts instanceof AbortSignal ? { purge: false, signal: opts, actor: undefined } : opts
    const query = purge ? '?purge=true' : ''
    await this.http.status('DELETE', urlPath`/tags/${String(tag)}` + query, {
      signal,
      headers: actorHeaders(actor),
    })
  }

  /** One page of the tag's history, newest first; pass `next` back as `after` for older entries. */
  async history(
    tag: Tag | string,
    opts: { after?: number; limit?: number; signal?: AbortSignal } = {},
  ): Promise<TagHistoryPage> {
    const qs = historyQuery(opts)
    const body = await this.http.json<unknown>('GET', urlPath`/tags/${String(tag)}/history` + qs, {
      signal: opts.signal,
    })
    return parseHistoryPage(body, 'build-index')
  }

  /** One page of the tags pointing at `digest`; pass `next` back as `after`. */
  async tagsOf(
    digest: Digest,
    opts: { after?: string; limit?: number; signal?: AbortSignal } = {},
  ): Promise<{ tags: string[]; next?: string }> {
    const qs = pageQuery(opts)
    const body = await this.http.json<{ tags: string[]; next?: string }>(
      'GET',
      urlPath`/digests/${digest}/tags` + qs,
      { signal: opts.signal },
    )
    return body.next === undefined ? { tags: body.tags } : { tags: body.tags, next: body.next }
  }

  /** One page of tags starting with the raw `prefix` ('' for all); pass `next` back as `after`. */
  async list(
    prefix: string,
    opts: { after?: string; limit?: number; signal?: AbortSignal } = {},
  ): Promise<{ tags: string[]; next?: string }> {
    const qs = pageQuery(opts)
    const path = prefix === '' ? '/list/' : urlPath`/list/${prefix}`
    const body = await this.http.json<{ tags: string[]; next?: string }>('GET', path + qs, {
      signal: opts.signal,
    })
    return body.next === undefined ? { tags: body.tags } : { tags: body.tags, next: body.next }
  }

  /** Every tag under `prefix`, page by page. */
  async *listAll(
    prefix: string,
    opts: { pageSize?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<string> {
    let after: string | undefined
    do {
      const page = await this.list(prefix, { after, limit: opts.pageSize, signal: opts.signal })
      yield* page.tags
      after = page.next
    } while (after !== undefined)
  }
}

function actorHeaders(actor: string | undefined): Record<string, string> | undefined {
  return actor ? { [ACTOR_HEADER]: actor } : undefined
}

/** `?limit=&after=` of a history request. */
export function historyQuery(opts: { after?: number; limit?: number }): string {
  return pageQuery({ limit: opts.limit, after: opts.after === undefined ? undefined : String(opts.after) })
}

/** A history page another daemon answered, checked (UPSTREAM_ERROR when it is not one). */
export function parseHistoryPage(body: unknown, name: string): TagHistoryPage {
  const bad = (why: string) => new ShoalError('UPSTREAM_ERROR', `${name} returned a tag history that ${why}`)
  if (typeof body !== 'object' || body === null) throw bad('is not an object')
  const b = body as { tag?: unknown; entries?: unknown; next?: unknown }
  if (typeof b.tag !== 'string' || !Array.isArray(b.entries)) throw bad('has no tag or entries')
  const entries: TagHistoryEntry[] = b.entries.map((e: unknown) => {
    const x = (e ?? {}) as Record<string, unknown>
    if (
      typeof x.seq !== 'number' ||
      typeof x.at !== 'string' ||
      typeof x.actor !== 'string' ||
      (x.action !== 'created' && x.action !== 'moved' && x.action !== 'deleted')
    )
      throw bad('has an invalid entry')
    const entry: TagHistoryEntry = { seq: x.seq, at: x.at, actor: x.actor, action: x.action }
    if (typeof x.from === 'string') entry.from = x.from
    if (typeof x.to === 'string') entry.to = x.to
    return entry
  })
  const page: TagHistoryPage = { tag: b.tag, entries }
  if (typeof b.next === 'number') page.next = b.next
  return page
}

function parseDigest(value: string): Digest {
  try {
    return Digest.parse(value)
  } catch (err) {
    throw new ShoalError(
      'UPSTREAM_ERROR',
      `build-index returned an invalid digest "${String(value).slice(0, 100)}"`,
      { cause: err },
    )
  }
}

/**
 * The meta fields of another daemon's answer, checked: a type we do not know or a desc that is
 * not a string is that daemon's error (UPSTREAM_ERROR), not something to pass on.
 */
export function answeredMeta(
  body: Partial<Record<(typeof TAG_META_KEYS)[number], unknown>>,
  name: string,
): TagMeta {
  const picked: Record<string, unknown> = {}
  for (const k of TAG_META_KEYS) if (body[k] !== undefined) picked[k] = body[k]
  try {
    return parseTagMeta(picked)
  } catch (err) {
    throw new ShoalError('UPSTREAM_ERROR', `${name} returned ${(err as Error).message}`, { cause: err })
  }
}

/**
 * `after` and `limit` of a list request as a proxy or agent received them, to pass on to
 * build-index (which checks the range and caps the limit); BAD_REQUEST for a limit that is
 * not a whole number.
 */
export function listQuery(query: URLSearchParams): { after?: string; limit?: number } {
  const out: { after?: string; limit?: number } = {}
  const after = query.get('after')
  if (after) out.after = after
  const limit = query.get('limit')
  if (limit !== null && limit !== '') {
    if (!/^[0-9]{1,9}$/.test(limit) || Number(limit) < 1)
      throw new ShoalError(
        'BAD_REQUEST',
        `invalid limit "${printable(limit)}": expected a whole number from 1`,
      )
    out.limit = Number(limit)
  }
  return out
}

/** `?limit=&after=` of a paginated route, or '' when neither is set. */
export function pageQuery(opts: { after?: string; limit?: number }): string {
  const q = new URLSearchParams()
  if (opts.limit !== undefined) q.set('limit', String(opts.limit))
  if (opts.after !== undefined) q.set('after', opts.after)
  return q.size > 0 ? `?${q.toString()}` : ''
}
