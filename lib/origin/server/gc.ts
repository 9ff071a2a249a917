/**
 * The origin's part of blob GC (docs/architecture.md, "Blob lifecycle: remove and GC").
 * Build-index decides that a blob no tag refers to may go, a grace period after the last tag was
 * removed, and asks every origin to delete it with `DELETE ...?unlessPushedWithinMs=<time since
 * the removal>` (an age, so the hosts' clocks need not agree). An origin that saw a push of the
 * blob since then (a commit, or an upload answered ALREADY_EXISTS: the pusher relies on the blob
 * being here) refuses with BLOB_RECOMMITTED, so a push racing with a remove never loses its blob
 * even before its tag is put.
 *
 * The memory is this process's only: a restart forgets it. That leaves the window between a
 * re-push's commit and its tag put (milliseconds; the tag, once put, keeps the blob on its own);
 * a tag put that loses that race fails with BLOB_NOT_FOUND rather than pointing at nothing.
 */
import type { Digest } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { BlobStore } from '../../store/index.js'
import type { WriteBack } from './writeback.js'

/** Pushes older than this are forgotten: no grace period is longer (build-index caps it). */
export const PUSH_MEMORY_MS = 7 * 24 * 60 * 60 * 1000
/** At most this many digests are remembered; the oldest go first (a Map keeps insertion order). */
const MAX_REMEMBERED = 100_000

export class RecentPushes {
  /** hex → epoch ms of the last push; re-inserted on every push, so the oldest come first. */
  private readonly at = new Map<string, number>()

  constructor(private readonly now: () => number = Date.now) {}

  pushed(digest: Digest): void {
    this.at.delete(digest.hex)
    this.at.set(digest.hex, this.now())
    this.prune()
  }

  /** True when the blob was pushed here at or after `since` (epoch ms). */
  pushedSince(digest: Digest, since: number): boolean {
    const t = this.at.get(digest.hex)
    return t !== undefined && t >= since
  }

  get size(): number {
    return this.at.size
  }

  private prune(): void {
    const oldest = this.now() - PUSH_MEMORY_MS
    for (const [hex, t] of this.at) {
      if (t >= oldest && this.at.size <= MAX_REMEMBERED) break
      this.at.delete(hex)
    }
  }
}

/**
 * `?unlessPushedWithinMs=` of a DELETE as a time on this host's clock (epoch ms): pushes at or
 * after it refuse the delete. Undefined when absent.
 */
export function parsePushedWithin(value: string | null, now: () => number = Date.now): number | undefined {
  if (value === null || value === '') return undefined
  if (!/^[0-9]{1,12}$/.test(value)) {
    throw new ShoalError(
      'BAD_REQUEST',
      `invalid unlessPushedWithinMs "${value.slice(0, 40)}": expected a whole number of milliseconds`,
    )
  }
  return now() - Number(value)
}

/**
 * BLOB_RECOMMITTED when the blob was pushed here since `since`. Before it refuses, it makes sure
 * the backend holds the blob again: a GC that deleted it on another origin first also deleted the
 * backend's copy, and this origin's copy must not be the last one.
 */
export async function refuseIfPushed(
  deps: { pushes: RecentPushes; store: BlobStore; writeBack: WriteBack; log: Logger },
  ns: string,
  digest: Digest,
  since: number | undefined,
): Promise<void> {
  if (since === undefined || !deps.pushes.pushedSince(digest, since)) return
  const cached = await deps.store.stat(digest)
  if (cached) {
    await deps.writeBack.enqueue(ns, digest, cached.size).catch((err) => {
      deps.log.warn({ err, digest: digest.toString() }, 'cannot queue the write-back of a re-pushed blob')
    })
  }
  throw new ShoalError(
    'BLOB_RECOMMITTED',
    `blob ${digest} is not deleted: it was pushed again after its last tag was removed (at ${new Date(since).toISOString()})`,
  )
}
