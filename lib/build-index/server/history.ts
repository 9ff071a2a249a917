/**
 * Tag history: every creation, move (of `latest`) and delete of a tag, with when, who (the
 * caller's identity as the request gives it) and old → new digest. One small JSON object per
 * tag, `history/<tagKey>`, next to `tags/<tagKey>`, holding the last `maxEntries` entries;
 * each entry has a per-tag sequence number that keeps counting across trims, so a page
 * cursor (`after` = a seq) stays valid while older entries are dropped.
 *
 * The object is rewritten (read, append, trim, write) by TagStore under the tag's lock, after
 * the tag write succeeded: a history entry never describes a write that did not happen. A
 * crash (or a backend error) between the two loses that entry; the failure is logged and
 * counted (shoal_build_index_history_failures_total), never the caller's error.
 */
import type { Backend } from '../../backend/types.js'
import { MAX_KEY_BYTES } from '../../backend/types.js'
import { z } from '../../config/index.js'
import { printable, type Tag, tagKey } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import { readSmall } from './refs.js'

export const HISTORY_PREFIX = 'history/'
/** Largest history object read back (1,000 entries of ~400 bytes fit well inside). */
const MAX_HISTORY_BYTES = 1 << 20
/** The longest actor kept (an x-shoal-actor header longer than this is refused). */
export const MAX_ACTOR_BYTES = 256

export const HistoryEntrySchema = z.object({
  seq: z.number().int().min(1),
  at: z.string(),
  actor: z.string(),
  action: z.enum(['created', 'moved', 'deleted']),
  /** The digest before (absent for `created`). */
  from: z.string().optional(),
  /** The digest after (absent for `deleted`). */
  to: z.string().optional(),
})
export type HistoryEntry = z.infer<typeof HistoryEntrySchema>

const HistorySchema = z.object({ tag: z.string(), entries: z.array(HistoryEntrySchema) })

export interface HistoryPage {
  tag: string
  /** Newest first. */
  entries: HistoryEntry[]
  /** Pass as `after` for the next (older) page; absent on the last page. */
  next?: number
}

export function historyKey(tag: Tag): string {
  const key = HISTORY_PREFIX + tagKey(tag.toString())
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw new ShoalError(
      'INVALID_TAG',
      `invalid tag "${printable(tag.toString())}": it is too long once encoded for storage; shorten the path or file name`,
    )
  }
  return key
}

export class TagHistory {
  constructor(
    private readonly backend: Backend,
    private readonly maxEntries: number,
  ) {}

  /** Appends one entry (seq assigned here), keeping the newest maxEntries. Callers hold the tag's lock. */
  async append(tag: Tag, entry: Omit<HistoryEntry, 'seq'>, signal?: AbortSignal): Promise<HistoryEntry> {
    const entries = await this.read(tag, signal)
    const seq = (entries.at(-1)?.seq ?? 0) + 1
    const full: HistoryEntry = { seq, ...entry }
    entries.push(full)
    const kept = entries.slice(-this.maxEntries)
    const body = Buffer.from(JSON.stringify({ tag: tag.toString(), entries: kept }))
    await this.backend.put(historyKey(tag), body, { size: body.length, signal })
    return full
  }

  /** One page, newest first: entries with seq < `after` (all when absent), at most `limit`. */
  async page(tag: Tag, opts: { after?: number; limit: number; signal?: AbortSignal }): Promise<HistoryPage> {
    const all = await this.read(tag, opts.signal)
    const older = opts.after === undefined ? all : all.filter((e) => e.seq < (opts.after as number))
    const entries = older.slice(-opts.limit).reverse()
    const last = entries.at(-1)
    const more = last !== undefined && all.some((e) => e.seq < last.seq)
    return more ? { tag: tag.toString(), entries, next: last.seq } : { tag: tag.toString(), entries }
  }

  /** The stored entries, oldest first ([] when none). */
  async read(tag: Tag, signal?: AbortSignal): Promise<HistoryEntry[]> {
    const key = historyKey(tag)
    const raw = await readSmall(this.backend, key, signal, MAX_HISTORY_BYTES, 'a tag history')
    if (raw === undefined) return []
    let parsed: unknown
    try {
      parsed = JSON.parse(raw.toString('utf8'))
    } catch {
      parsed = undefined
    }
    const history = HistorySchema.safeParse(parsed)
    if (!history.success)
      throw new ShoalError('BACKEND_ERROR', `tag history ${key} is not valid; restore or delete it`)
    return history.data.entries.sort((a, b) => a.seq - b.seq)
  }
}

/**
 * Who made a request: the `x-shoal-actor` header when the caller sent one (a proxy or CLI
 * passing on the user), else the remote address. Not authentication: it records what the
 * request claims (docs/decisions.md, "Tag history").
 */
export function actorOf(header: string | string[] | undefined, remoteAddress: string | undefined): string {
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined || value === '') return remoteAddress ?? 'unknown'
  if (Buffer.byteLength(value) > MAX_ACTOR_BYTES || !/^[\x20-\x7e]+$/.test(value)) {
    throw new ShoalError(
      'BAD_REQUEST',
      `invalid x-shoal-actor "${printable(value.slice(0, 64))}": 1-${MAX_ACTOR_BYTES} printable ASCII characters`,
    )
  }
  return value
}

export const ACTOR_HEADER = 'x-shoal-actor'
