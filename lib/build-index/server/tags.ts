/**
 * The tag rules, independent of HTTP: tag → digest records stored as small JSON objects in
 * the backend under `tags/<tagKey(canonical tag)>`. `latest` may move; every other version is
 * immutable once written; a tag may only point at a blob the origin cluster holds.
 *
 * Consistency: check-then-write runs under the tag's lock (tag-lock.ts): in-process by
 * default (one build-index per backend), a Redis lease when `redis` is configured, which lets
 * several build-index instances share one backend with one writer per tag at a time.
 */
import type { Backend } from '../../backend/types.js'
import {
  Digest,
  hasTagMeta,
  MAX_TAG_BYTES,
  sameTagMeta,
  type Tag,
  type TagMeta,
  tagFromKey,
  tagKey,
  tagMetaOf,
} from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { type Counter, counter, type Registry } from '../../metrics/index.js'
import type { BlobCheck } from './blob-check.js'
import type { HistoryEntry, TagHistory } from './history.js'
import {
  EMPTY,
  REFS_COMPLETE_KEY,
  readSmall,
  readTombstone,
  refKey,
  refPrefix,
  tagOfRefKey,
  tombstoneKey,
  writeTombstone,
} from './refs.js'
import { LocalTagLock, type TagLock } from './tag-lock.js'
import {
  MAX_RECORD_BYTES,
  notFound,
  parseTag,
  parseTagRecord,
  TAG_PREFIX,
  type TagRecord,
  tagObjectKey,
  withMeta,
} from './tag-record.js'

export { TAG_PREFIX, type TagRecord, tagObjectKey }

/** created: new tag; moved: `latest` now points elsewhere; unchanged: same digest again. */
export type PutResult = 'created' | 'moved' | 'unchanged'

export interface TagPage {
  tags: string[]
  /** Pass as `after` for the next page; absent on the last page. */
  next?: string
}

export interface TagStoreOptions {
  backend: Backend
  blobCheck: BlobCheck
  logger: Logger
  registry?: Registry
  now?: () => Date
  /** Where creations, moves and deletes are recorded (none: not recorded). */
  history?: TagHistory
  /** One writer per tag (default: in this process only). */
  lock?: TagLock
}

export class TagStore {
  private readonly backend: Backend
  private readonly blobCheck: BlobCheck
  private readonly log: Logger
  private readonly now: () => Date
  private readonly locks: TagLock
  private readonly puts: Counter | undefined
  private readonly deletes: Counter | undefined
  private readonly lookups: Counter | undefined
  private readonly historyFailures: Counter | undefined
  readonly history: TagHistory | undefined
  /** tagsOf() answers once every tag stored before the reverse index has its pair. */
  private refsReady = false

  constructor(opts: TagStoreOptions) {
    this.backend = opts.backend
    this.blobCheck = opts.blobCheck
    this.log = opts.logger.child({ component: 'build-index-tags' })
    this.now = opts.now ?? (() => new Date())
    this.history = opts.history
    this.locks = opts.lock ?? new LocalTagLock()
    if (opts.registry) {
      this.historyFailures = counter(
        opts.registry,
        'shoal_build_index_history_failures_total',
        'Tag writes whose history entry could not be stored (the write itself happened)',
      )
      this.puts = counter(opts.registry, 'shoal_build_index_tag_puts_total', 'Tag puts by result', ['result'])
      this.deletes = counter(opts.registry, 'shoal_build_index_tag_deletes_total', 'Tags deleted')
      this.lookups = counter(opts.registry, 'shoal_build_index_tag_lookups_total', 'Tag lookups by result', [
        'result',
      ])
    }
  }

  /**
   * Points `tag` at `digest` under the rules; throws TAG_CONFLICT or BLOB_NOT_FOUND. `meta`
   * (already checked with parseTagMeta) is stored with a record the put writes. Put again at
   * the same digest, `latest` takes a non-empty meta as its new meta (a description fixed
   * after the fact); an immutable version keeps the meta it was first written with, like
   * its digest. An empty meta never clears one (clients from before meta send none).
   */
  async put(
    tag: Tag,
    digest: Digest,
    opts: { ns: string; signal?: AbortSignal; meta?: TagMeta; actor?: string },
  ): Promise<{ record: TagRecord; result: PutResult; previous?: string }> {
    const key = tagObjectKey(tag)
    const name = tag.toString()
    return this.locks.run(key, async (hold) => {
      const existing = await this.read(key, opts.signal)
      if (existing && existing.digest === digest.toString()) {
        // Heals a missing pair (a crash between writes); cheap next to the push before it.
        await this.backend.put(refKey(digest, tag), EMPTY, { size: 0, signal: opts.signal })
        this.puts?.inc({ result: 'unchanged' })
        this.log.debug({ tag: name, digest: existing.digest }, 'tag already points at this digest')
        const meta = opts.meta
        if (tag.isLatest && hasTagMeta(meta) && !sameTagMeta(tagMetaOf(meta), tagMetaOf(existing))) {
          const updated = withMeta({ ...existing, updatedAt: this.now().toISOString() }, meta)
          await hold.check()
          await this.write(key, updated, opts.signal)
          this.log.info({ tag: name, digest: existing.digest }, 'tag metadata updated')
          return { record: updated, result: 'unchanged' as const }
        }
        return { record: existing, result: 'unchanged' as const }
      }
      if (existing && !tag.isLatest) {
        this.puts?.inc({ result: 'conflict' })
        throw new ShoalError(
          'TAG_CONFLICT',
          `tag ${name} already points at ${existing.digest}; versions other than latest are immutable (push under a new version)`,
          { details: { tag: name, digest: existing.digest } },
        )
      }
      if (!existing && !tag.isLatest) await this.checkTombstone(tag, digest, opts.signal)
      // The pair goes in first: an origin deleting this blob from now on sees the tag.
      const ref = refKey(digest, tag)
      await this.backend.put(ref, EMPTY, { size: 0, signal: opts.signal })
      const at = this.now().toISOString()
      const record: TagRecord = withMeta(
        {
          tag: name,
          digest: digest.toString(),
          createdAt: existing?.createdAt ?? at,
          updatedAt: at,
          ns: opts.ns,
        },
        opts.meta,
      )
      let written = false
      try {
        if (!(await this.blobCheck.exists(opts.ns, digest, opts.signal))) {
          this.puts?.inc({ result: 'blob_missing' })
          throw new ShoalError(
            'BLOB_NOT_FOUND',
            `blob ${digest} is not in the origin cluster (namespace ${opts.ns}): push the blob first, then put the tag`,
          )
        }
        await hold.check()
        await this.write(key, record, opts.signal)
        written = true
      } finally {
        if (!written) await this.dropRef(digest, tag)
      }
      if (existing) await this.dropRef(Digest.parse(existing.digest), tag)
      const result: PutResult = existing ? 'moved' : 'created'
      await this.record(tag, {
        at,
        actor: opts.actor ?? 'unknown',
        action: result,
        ...(existing ? { from: existing.digest } : {}),
        to: record.digest,
      })
      this.puts?.inc({ result })
      if (existing)
        this.log.info({ tag: name, digest: record.digest, previous: existing.digest }, 'tag moved')
      else this.log.info({ tag: name, digest: record.digest }, 'tag put')
      return existing ? { record, result, previous: existing.digest } : { record, result }
    })
  }

  /** The record of `tag`; TAG_NOT_FOUND when absent. */
  async get(tag: Tag, signal?: AbortSignal): Promise<TagRecord> {
    const record = await this.find(tag, signal)
    if (!record) throw notFound(tag)
    return record
  }

  async find(tag: Tag, signal?: AbortSignal): Promise<TagRecord | undefined> {
    const record = await this.read(tagObjectKey(tag), signal)
    this.lookups?.inc({ result: record ? 'hit' : 'miss' })
    return record
  }

  /**
   * Removes the tag; TAG_NOT_FOUND when absent. A version other than latest leaves a tombstone
   * (its digest), so it can be restored but never repointed. `purge` also removes the
   * tombstone (of a tag already deleted, too); callers decide who may purge. The blob is left
   * alone: the origin deletes it on request once no tag points at it.
   */
  async delete(
    tag: Tag,
    opts: { purge?: boolean; signal?: AbortSignal; actor?: string } = {},
  ): Promise<TagRecord | undefined> {
    const key = tagObjectKey(tag)
    const { signal, purge = false } = opts
    return this.locks.run(key, async (hold) => {
      const existing = await this.read(key, signal)
      if (!existing) {
        const tomb = purge ? await readTombstone(this.backend, tag, signal) : undefined
        if (!tomb) throw notFound(tag)
        await hold.check()
        await this.backend.delete(tombstoneKey(tag), signal)
        this.log.warn({ tag: tomb.tag, digest: tomb.digest }, 'tombstone purged')
        return undefined
      }
      await hold.check()
      // Tombstone first: a crash after it leaves the version deleted-and-guarded, never repointable.
      if (!tag.isLatest && !purge) {
        const tomb = { tag: existing.tag, digest: existing.digest, deletedAt: this.now().toISOString() }
        await writeTombstone(this.backend, tomb, tag, signal)
      }
      await this.backend.delete(key, signal)
      if (purge) await this.backend.delete(tombstoneKey(tag), signal)
      await this.dropRef(Digest.parse(existing.digest), tag)
      await this.record(tag, {
        at: this.now().toISOString(),
        actor: opts.actor ?? 'unknown',
        action: 'deleted',
        from: existing.digest,
      })
      this.deletes?.inc()
      this.log.info({ tag: existing.tag, digest: existing.digest, purge }, 'tag deleted')
      return existing
    })
  }

  /**
   * Tags pointing at `digest` (one page, in key order; `after` is the last tag of the previous
   * page). Each pair is confirmed against its tag under the tag's lock, so a pair left by a
   * crash is dropped here, while a put still in progress counts (it waits for the lock).
   */
  async tagsOf(
    digest: Digest,
    opts: { after?: string; limit: number; signal?: AbortSignal },
  ): Promise<TagPage> {
    if (!this.refsReady) {
      throw new ShoalError(
        'UNAVAILABLE',
        'build-index is still indexing existing tags by digest (after an upgrade); retry shortly',
      )
    }
    const prefix = refPrefix(digest)
    const page = await this.backend.list(prefix, {
      after: opts.after === undefined ? undefined : prefix + tagKey(opts.after),
      limit: opts.limit,
      signal: opts.signal,
    })
    const tags: string[] = []
    for (const k of page.keys) {
      const name = tagOfRefKey(digest, k)
      if (await this.confirmRef(digest, name, opts.signal)) tags.push(name)
    }
    const last = page.keys.at(-1)
    return page.next !== undefined && last !== undefined
      ? { tags, next: tagOfRefKey(digest, last) }
      : { tags }
  }

  /**
   * Writes the pair of every stored tag, once (tags stored before the reverse index existed),
   * then marks the index complete; until then tagsOf() answers UNAVAILABLE.
   */
  async indexExisting(signal?: AbortSignal): Promise<number> {
    if (await this.backend.stat(REFS_COMPLETE_KEY, signal)) {
      this.refsReady = true
      return 0
    }
    let count = 0
    let after: string | undefined
    do {
      const page = await this.backend.list(TAG_PREFIX, { after, limit: 1000, signal })
      for (const k of page.keys) {
        const record = await this.read(k, signal).catch(() => undefined)
        if (!record) continue
        const tag = parseTag(record.tag)
        if (!tag) continue
        await this.backend.put(refKey(Digest.parse(record.digest), tag), EMPTY, { size: 0, signal })
        count++
      }
      after = page.next
    } while (after !== undefined)
    await this.backend.put(REFS_COMPLETE_KEY, EMPTY, { size: 0, signal })
    this.refsReady = true
    this.log.info({ tags: count }, 'indexed existing tags by digest')
    return count
  }

  private async confirmRef(digest: Digest, name: string, signal?: AbortSignal): Promise<boolean> {
    const tag = parseTag(name)
    if (!tag) return true // cannot check it: keep counting it (never "assume unused")
    return this.locks.run(tagObjectKey(tag), async () => {
      const record = await this.read(tagObjectKey(tag), signal)
      if (record?.digest === digest.toString()) return true
      await this.dropRef(digest, tag)
      this.log.info({ tag: name, digest: digest.toString() }, 'dropped a stale digest → tag pair')
      return false
    })
  }

  /** Appends to the tag's history; a failure is logged and counted, the write stands. */
  private async record(tag: Tag, entry: Omit<HistoryEntry, 'seq'>): Promise<void> {
    if (!this.history) return
    try {
      await this.history.append(tag, entry)
    } catch (err) {
      this.historyFailures?.inc()
      this.log.error({ err, tag: tag.toString(), ...entry }, 'cannot record a tag history entry')
    }
  }

  private async checkTombstone(tag: Tag, digest: Digest, signal?: AbortSignal): Promise<void> {
    const tomb = await readTombstone(this.backend, tag, signal)
    if (!tomb || tomb.digest === digest.toString()) return
    this.puts?.inc({ result: 'conflict' })
    throw new ShoalError(
      'TAG_CONFLICT',
      `tag ${tag} was deleted at ${tomb.deletedAt} while it pointed at ${tomb.digest}; its tombstone keeps the version from pointing at other bytes: push under a new version, or put it back at ${tomb.digest}, or have an operator purge the tombstone on the build-index host (DELETE /tags/<tag>?purge=true)`,
      { details: { tag: tomb.tag, digest: tomb.digest, tombstone: true } },
    )
  }

  /** Best effort: a pair left behind only makes a delete refuse until tagsOf() drops it. */
  private async dropRef(digest: Digest, tag: Tag): Promise<void> {
    await this.backend.delete(refKey(digest, tag)).catch((err) => {
      this.log.warn(
        { err, tag: tag.toString(), digest: digest.toString() },
        'cannot remove a digest → tag pair',
      )
    })
  }

  /**
   * Tags starting with the raw `prefix` ('' for all), in ascending order of their encoded keys.
   * `after` is the last tag of the previous page (what `next` returned).
   */
  async list(
    prefix: string,
    opts: { after?: string; limit: number; signal?: AbortSignal },
  ): Promise<TagPage> {
    for (const [what, value] of [
      ['prefix', prefix],
      ['after', opts.after ?? ''],
    ] as const) {
      if (Buffer.byteLength(value) > MAX_TAG_BYTES) {
        throw new ShoalError(
          'BAD_REQUEST',
          `list ${what} is longer than a tag can be (${MAX_TAG_BYTES} bytes)`,
        )
      }
    }
    const page = await this.backend.list(TAG_PREFIX + tagKey(prefix), {
      after: opts.after === undefined ? undefined : TAG_PREFIX + tagKey(opts.after),
      limit: opts.limit,
      signal: opts.signal,
    })
    const tags = page.keys.map((k) => tagFromKey(k.slice(TAG_PREFIX.length)))
    const last = tags[tags.length - 1]
    return page.next !== undefined && last !== undefined ? { tags, next: last } : { tags }
  }

  private async write(key: string, record: TagRecord, signal?: AbortSignal): Promise<void> {
    const body = Buffer.from(JSON.stringify(record))
    await this.backend.put(key, body, { size: body.length, signal })
  }

  private async read(key: string, signal?: AbortSignal): Promise<TagRecord | undefined> {
    const raw = await readSmall(this.backend, key, signal, MAX_RECORD_BYTES, 'a tag record')
    return raw === undefined ? undefined : parseTagRecord(raw, key)
  }
}
