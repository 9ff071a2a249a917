/**
 * What a tag says about its content besides the digest: whether the blob is a file or a
 * directory manifest, and a free-text description shown by pull and list. Sent as the JSON
 * body of a tag put (`{"type":"directory","desc":"..."}`), stored in the tag record.
 *
 * The rules live here, not in one daemon: the proxy checks before forwarding, build-index
 * checks again (it may be called directly), and both give the same message.
 */
import { ShoalError } from '../errors/index.js'
import { printable } from './digest.js'

export const TAG_TYPES = ['file', 'directory'] as const
export type TagType = (typeof TAG_TYPES)[number]

/** Long enough for a sentence or two; a tag record is not a place for documents. */
export const MAX_TAG_DESC_BYTES = 1024
/** The largest tag-put body read; a valid meta is far smaller, so more is refused unread. */
export const MAX_TAG_META_BODY = 4096

export interface TagMeta {
  type?: TagType
  desc?: string
}

/**
 * Checks a decoded meta object; BAD_REQUEST naming the problem. `undefined` and `null` are
 * "no meta" ({}). An empty desc is no desc. Unknown keys are refused, so a typo ("descr") is
 * not silently dropped.
 */
export function parseTagMeta(value: unknown): TagMeta {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value))
    throw bad('expected a JSON object like {"type":"directory","desc":"..."}')
  const out: TagMeta = {}
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    if (key === 'type') {
      if (v === undefined || v === null) continue
      if (typeof v !== 'string' || !(TAG_TYPES as readonly string[]).includes(v))
        throw bad(`type must be "file" or "directory", not ${describe(v)}`)
      out.type = v as TagType
    } else if (key === 'desc') {
      if (v === undefined || v === null) continue
      if (typeof v !== 'string') throw bad(`desc must be a string, not ${describe(v)}`)
      checkDesc(v)
      if (v !== '') out.desc = v
    } else {
      throw bad(`unknown field "${printable(key, 40)}" (expected type and desc)`)
    }
  }
  return out
}

/**
 * The meta of a tag-put body as read from the wire: an empty (or all white space) body is no
 * meta, as before meta existed; anything else must be JSON accepted by parseTagMeta.
 */
export function parseTagMetaBody(body: Buffer): TagMeta {
  const text = body.toString('utf8')
  if (text.trim() === '') return {}
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw bad('the request body is not valid JSON (expected {"type":"file|directory","desc":"..."})')
  }
  return parseTagMeta(value)
}

/** True when the meta carries anything (an empty one is not sent, and changes nothing). */
export function hasTagMeta(meta: TagMeta | undefined): meta is TagMeta {
  return meta !== undefined && (meta.type !== undefined || meta.desc !== undefined)
}

/** Only the meta fields `x` has, so answers and records carry no `"type": undefined` keys. */
export function tagMetaOf(x: { type?: TagType; desc?: string }): TagMeta {
  const out: TagMeta = {}
  if (x.type !== undefined) out.type = x.type
  if (x.desc !== undefined) out.desc = x.desc
  return out
}

function checkDesc(desc: string): void {
  const bytes = Buffer.byteLength(desc, 'utf8')
  if (bytes > MAX_TAG_DESC_BYTES)
    throw bad(`desc is ${bytes} bytes (UTF-8); the limit is ${MAX_TAG_DESC_BYTES}`)
  // A lone surrogate cannot be stored as UTF-8: it would come back as U+FFFD.
  if (Buffer.from(desc, 'utf8').toString('utf8') !== desc) throw bad('desc is not valid Unicode')
  for (const ch of desc) {
    const c = ch.codePointAt(0) ?? 0
    // Control characters (new lines included) would garble one-line listings and terminals.
    if (c < 0x20 || c === 0x7f || (c >= 0x80 && c < 0xa0))
      throw bad(
        `desc contains the control character U+${c.toString(16).padStart(4, '0').toUpperCase()}; use one line of printable text`,
      )
  }
}

function describe(v: unknown): string {
  if (typeof v === 'string') return `"${printable(v, 40)}"`
  return Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : String(v)
}

function bad(what: string): ShoalError {
  return new ShoalError('BAD_REQUEST', `invalid tag metadata: ${what}`)
}
