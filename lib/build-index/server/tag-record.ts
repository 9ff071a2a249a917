/**
 * A tag record as build-index stores it: a small JSON object under `tags/<tagKey(tag)>`, its
 * schema, its key, and the check of what a backend hands back.
 */
import { MAX_KEY_BYTES } from '../../backend/types.js'
import { z } from '../../config/index.js'
import { Digest, printable, TAG_TYPES, Tag, type TagMeta, tagKey, tagMetaOf } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'

export const TAG_PREFIX = 'tags/'
export const MAX_RECORD_BYTES = 64 << 10

const TagRecordSchema = z.object({
  tag: z.string(),
  digest: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
  /** The namespace the blob was checked in (GC deletes it there); absent in older records. */
  ns: z.string().optional(),
  /** What the blob is and what it holds (lib/core/tag-meta.ts); absent in older records. */
  type: z.enum(TAG_TYPES).optional(),
  desc: z.string().optional(),
  mode: z.number().int().min(0).max(0o7777).optional(),
  mtimeMs: z.number().min(0).optional(),
})
export type TagRecord = z.infer<typeof TagRecordSchema>

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

/** A stored record, checked: an object that is not one is the backend's problem, named by key. */
export function parseTagRecord(raw: Buffer, key: string): TagRecord {
  let parsed: unknown
  try {
    parsed = JSON.parse(raw.toString('utf8'))
  } catch (err) {
    throw new ShoalError('BACKEND_ERROR', `tag object ${key} is not valid JSON; restore or delete it`, {
      cause: err,
    })
  }
  const record = TagRecordSchema.safeParse(parsed)
  if (!record.success || !Digest.isValid(record.data.digest)) {
    throw new ShoalError('BACKEND_ERROR', `tag object ${key} is not a valid tag record; restore or delete it`)
  }
  return record.data
}

/** The record with the meta's fields set (only those present: no `undefined` keys are stored). */
export function withMeta(record: TagRecord, meta: TagMeta | undefined): TagRecord {
  const { type: _type, desc: _desc, mode: _mode, mtimeMs: _mtimeMs, ...rest } = record
  return { ...rest, ...tagMetaOf(meta ?? {}) }
}

/** The tag a stored name spells, or undefined when it no longer parses (rules tightened since). */
export function parseTag(name: string): Tag | undefined {
  try {
    return Tag.parse(name)
  } catch {
    return undefined
  }
}

export function notFound(tag: Tag): ShoalError {
  return new ShoalError('TAG_NOT_FOUND', `tag not found: ${tag.toString()}`)
}
