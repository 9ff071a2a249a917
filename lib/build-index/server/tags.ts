/**
 * The tag rules, independent of HTTP: tag → digest records stored as small JSON objects in
 * the backend under `tags/<tagKey(canonical tag)>`. `latest` may move; every other version is
 * immutable once written; a tag may only point at a blob the origin cluster holds.
 *
 * Consistency: check-then-write runs under a per-tag lock, which is enough for one
 * build-index process. Several replicas writing the same backend are not serialised against
 * each other (the backends have no compare-and-swap); run one writer per backend.
 */
import type { Readable } from 'node:stream'
import type { Backend } from '../../backend/types.js'
import { MAX_KEY_BYTES } from '../../backend/types.js'
import { z } from '../../config/index.js'
import { Digest, MAX_TAG_BYTES, printable, type Tag, tagFromKey, tagKey } from '../../core/index.js'
import { isShoalError, ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { type Counter, counter, type Registry } from '../../metrics/index.js'
import type { BlobCheck } from './blob-check.js'
import { KeyedMutex } from './mutex.js'

export const TAG_PREFIX = 'tags/'
const MAX_RECORD_BYTES = 64 << 10

const TagRecordSchema = z.object({
  tag: z.string(),
  digest: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
})
export type TagRecord = z.infer<typeof TagRecordSchema>

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
}

/** The backend key of a tag; never the raw tag, so '/', '..' and the like cannot escape `tags/`. */
export function tagObjectKey(tag: Tag): string {
  const key = TAG_PREFIX + tagKey(tag.toString())
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw new ShoalError(
      'INVALID_TAG',
      `invalid tag "${printable(tag.toString())}": it is ${Buffer.byteLength(key)} bytes once encoded for storage; the limit is ${MAX_KEY_BYTES} (shorten the path or file name)`,
    )
  }
  return key
}

export class TagStore {
  private readonly backend: Backend
  private readonly blobCheck: BlobCheck
  private readonly log: Logger
  private readonly now: () => Date
  private readonly locks = new KeyedMutex()
  private readonly puts: Counter | undefined
  private readonly deletes: Counter | undefined
  private readonly lookups: Counter | undefined

  constructor(opts: TagStoreOptions) {
    this.backend = opts.backend
    this.blobCheck = opts.blobCheck
    this.log = opts.logger.child({ component: 'build-index-tags' })
    this.now = opts.now ?? (() => new Date())
    if (opts.registry) {
      this.puts = counter(opts.registry, 'shoal_build_index_tag_puts_total', 'Tag puts by result', ['result'])
      this.deletes = counter(opts.registry, 'shoal_build_index_tag_deletes_total', 'Tags deleted')
      this.lookups = counter(opts.registry, 'shoal_build_index_tag_lookups_total', 'Tag lookups by result', [
        'result',
      ])
    }
  }

  /** Points `tag` at `digest` under the rules; throws TAG_CONFLICT or BLOB_NOT_FOUND. */
  async put(
    tag: Tag,
    digest: Digest,
    opts: { ns: string; signal?: AbortSignal },
  ): Promise<{ record: TagRecord; result: PutResult; previous?: string }> {
    const key = tagObjectKey(tag)
    const name = tag.toString()
    return this.locks.run(key, async () => {
      const existing = await this.read(key, opts.signal)
      if (existing && existing.digest === digest.toString()) {
        this.puts?.inc({ result: 'unchanged' })
        this.log.debug({ tag: name, digest: existing.digest }, 'tag already points at this digest')
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
      if (!(await this.blobCheck.exists(opts.ns, digest, opts.signal))) {
        this.puts?.inc({ result: 'blob_missing' })
        throw new ShoalError(
          'BLOB_NOT_FOUND',
          `blob ${digest} is not in the origin cluster (namespace ${opts.ns}): push the blob first, then put the tag`,
        )
      }
      const at = this.now().toISOString()
      const record: TagRecord = {
        tag: name,
        digest: digest.toString(),
        createdAt: existing?.createdAt ?? at,
        updatedAt: at,
      }
      const body = Buffer.from(JSON.stringify(record))
      await this.backend.put(key, body, { size: body.length, signal: opts.signal })
      const result: PutResult = existing ? 'moved' : 'created'
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

  /** Removes the tag; TAG_NOT_FOUND when absent. The blob is left alone (GC is separate). */
  async delete(tag: Tag, signal?: AbortSignal): Promise<TagRecord> {
    const key = tagObjectKey(tag)
    return this.locks.run(key, async () => {
      const existing = await this.read(key, signal)
      if (!existing) throw notFound(tag)
      await this.backend.delete(key, signal)
      this.deletes?.inc()
      this.log.info({ tag: existing.tag, digest: existing.digest }, 'tag deleted')
      return existing
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

  private async read(key: string, signal?: AbortSignal): Promise<TagRecord | undefined> {
    let stream: Readable
    try {
      stream = await this.backend.get(key, { signal })
    } catch (err) {
      if (isShoalError(err, 'BLOB_NOT_FOUND') || isShoalError(err, 'NOT_FOUND')) return undefined
      throw err
    }
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of stream) {
      size += (chunk as Buffer).length
      if (size > MAX_RECORD_BYTES) {
        stream.destroy()
        throw new ShoalError(
          'BACKEND_ERROR',
          `tag object ${key} is larger than ${MAX_RECORD_BYTES} bytes; it is not a tag record`,
        )
      }
      chunks.push(chunk as Buffer)
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    } catch (err) {
      throw new ShoalError('BACKEND_ERROR', `tag object ${key} is not valid JSON; restore or delete it`, {
        cause: err,
      })
    }
    const record = TagRecordSchema.safeParse(parsed)
    if (!record.success || !Digest.isValid(record.data.digest)) {
      throw new ShoalError(
        'BACKEND_ERROR',
        `tag object ${key} is not a valid tag record; restore or delete it`,
      )
    }
    return record.data
  }
}

function notFound(tag: Tag): ShoalError {
  return new ShoalError('TAG_NOT_FOUND', `tag not found: ${tag.toString()}`)
}
