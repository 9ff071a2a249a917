/**
 * The reverse index digest → tags, so an origin can ask "does any tag still point at this
 * blob?" before it deletes it (GET /digests/:digest/tags). One empty object per (digest, tag):
 * `refs/sha256/<hex>/<tagKey>`. One object per pair rather than a list per digest: no
 * read-modify-write (the backends have no compare-and-swap), and a prefix list pages through
 * a digest's tags however many daily versions point at it.
 *
 * TagStore writes a pair BEFORE it checks that the origins hold the blob and writes the tag,
 * and removes it after the tag is gone, so the index errs towards "in use": an origin that
 * marks a blob as being deleted (HEAD answers 404) and then finds no pair here cannot race a
 * tag put (see docs/decisions.md, "Deleting blobs").
 *
 * Tombstones: `tombstones/<tagKey>` records the digest of a deleted immutable version, so the
 * version can be restored (same digest) but never repointed, until an operator purges it.
 */
import type { Readable } from 'node:stream'
import type { Backend } from '../../backend/types.js'
import { MAX_KEY_BYTES } from '../../backend/types.js'
import { z } from '../../config/index.js'
import { type Digest, printable, type Tag, tagFromKey, tagKey } from '../../core/index.js'
import { isShoalError, ShoalError } from '../../errors/index.js'

export const REF_PREFIX = 'refs/sha256/'
export const TOMBSTONE_PREFIX = 'tombstones/'
/** Written once every tag stored before the reverse index existed has its pair. */
export const REFS_COMPLETE_KEY = '_shoal/build-index-refs-v1'
const MAX_JSON_BYTES = 64 << 10

export function refPrefix(digest: Digest): string {
  return `${REF_PREFIX}${digest.hex}/`
}

/** The pair's key; INVALID_TAG when the tag is too long to be indexed. */
export function refKey(digest: Digest, tag: Tag): string {
  return checked(refPrefix(digest) + tagKey(tag.toString()), tag)
}

export function tombstoneKey(tag: Tag): string {
  return checked(TOMBSTONE_PREFIX + tagKey(tag.toString()), tag)
}

/** The tag a pair key names. */
export function tagOfRefKey(digest: Digest, key: string): string {
  return tagFromKey(key.slice(refPrefix(digest).length))
}

function checked(key: string, tag: Tag): string {
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw new ShoalError(
      'INVALID_TAG',
      `invalid tag "${printable(tag.toString())}": it is too long once encoded for storage (${Buffer.byteLength(key)} of ${MAX_KEY_BYTES} bytes); shorten the path or file name`,
    )
  }
  return key
}

const TombstoneSchema = z.object({ tag: z.string(), digest: z.string(), deletedAt: z.string() })
export type Tombstone = z.infer<typeof TombstoneSchema>

export async function readTombstone(
  backend: Backend,
  tag: Tag,
  signal?: AbortSignal,
): Promise<Tombstone | undefined> {
  const key = tombstoneKey(tag)
  const raw = await readSmall(backend, key, signal)
  if (raw === undefined) return undefined
  const parsed = TombstoneSchema.safeParse(safeJson(raw))
  if (!parsed.success)
    throw new ShoalError('BACKEND_ERROR', `tombstone ${key} is not valid; restore or delete it`)
  return parsed.data
}

export async function writeTombstone(backend: Backend, t: Tombstone, tag: Tag, signal?: AbortSignal) {
  const body = Buffer.from(JSON.stringify(t))
  await backend.put(tombstoneKey(tag), body, { size: body.length, signal })
}

/** `raw` as JSON checked by `schema`; undefined when it is not JSON or does not match. */
export function parseJsonWith<T>(schema: z.ZodType<T>, raw: Buffer): T | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(raw.toString('utf8'))
  } catch {
    return undefined
  }
  const out = schema.safeParse(parsed)
  return out.success ? out.data : undefined
}

/**
 * A small object's bytes, or undefined when it does not exist; BACKEND_ERROR past `limit`
 * (`what` says what the object should have been).
 */
export async function readSmall(
  backend: Backend,
  key: string,
  signal?: AbortSignal,
  limit = MAX_JSON_BYTES,
  what = 'a small JSON record',
): Promise<Buffer | undefined> {
  let stream: Readable
  try {
    stream = await backend.get(key, { signal })
  } catch (err) {
    if (isShoalError(err, 'BLOB_NOT_FOUND') || isShoalError(err, 'NOT_FOUND')) return undefined
    throw err
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stream) {
    size += (chunk as Buffer).length
    if (size > limit) {
      stream.destroy()
      throw new ShoalError('BACKEND_ERROR', `object ${key} is larger than ${limit} bytes; it is not ${what}`)
    }
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

function safeJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8'))
  } catch {
    return undefined
  }
}

export const EMPTY = Buffer.alloc(0)

export { tagKey }
