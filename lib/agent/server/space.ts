/**
 * Admission by disk space: a download starts only when the bytes it still has to write fit in
 * the data folder's file system beside what the other downloads in flight still have to write,
 * keeping `minFreeBytes` free for everything else on the host (logs, the metainfo sidecars, the
 * journal). Refused before anything is written (no journal entry, no sparse file), with the
 * path, the bytes needed and the bytes free. Downloads write into sparse files, so a download's
 * outstanding bytes are its missing pieces, and what a resumed one already holds is not asked for
 * twice. A claim only counts within this process: another writer on the disk can still fill it,
 * which is what the ENOSPC handling in Downloads is for.
 */
import { type Digest, formatBytes } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import type { BlobStore } from '../../store/index.js'

export class DiskSpace {
  /** Bytes each download in flight still has to write, by digest hex. */
  private readonly outstanding = new Map<string, () => number>()
  private queue: Promise<void> = Promise.resolve()

  constructor(
    private readonly store: Pick<BlobStore, 'root' | 'freeBytes' | 'downloadBytes'>,
    readonly minFreeBytes: number,
  ) {}

  /**
   * Admits the download of `length` bytes of `digest` or throws INSUFFICIENT_STORAGE. Once
   * admitted, its outstanding bytes count against later claims until release(); `remaining`
   * (set by track()) keeps that count current as pieces land.
   */
  claim(digest: Digest, length: number): Promise<void> {
    // One at a time: two claims reading the same free space would both be admitted.
    const run = this.queue.then(() => this.admit(digest, length))
    this.queue = run.catch(() => undefined)
    return run
  }

  /** From now on the download's outstanding bytes are what `remaining` says (its missing pieces). */
  track(digest: Digest, remaining: () => number): void {
    if (this.outstanding.has(digest.hex)) this.outstanding.set(digest.hex, remaining)
  }

  release(digest: Digest): void {
    this.outstanding.delete(digest.hex)
  }

  private async admit(digest: Digest, length: number): Promise<void> {
    const onDisk = await this.store.downloadBytes(digest)
    const needed = Math.max(0, length - onDisk)
    const free = await this.store.freeBytes()
    let others = 0
    let count = 0
    for (const [hex, left] of this.outstanding) {
      if (hex === digest.hex) continue
      others += left()
      count++
    }
    if (needed + others + this.minFreeBytes > free) {
      const resumed = onDisk > 0 ? `, ${formatBytes(onDisk)} of it already downloaded` : ''
      const busy = count > 0 ? ` plus ${formatBytes(others)} for ${count} other download(s) in progress` : ''
      throw new ShoalError(
        'INSUFFICIENT_STORAGE',
        `not enough disk space to download ${digest} into ${this.store.root}: it needs ` +
          `${formatBytes(needed)} (blob ${formatBytes(length)}${resumed})${busy}, and ` +
          `${formatBytes(this.minFreeBytes)} must stay free (minFreeBytes); ${formatBytes(free)} ` +
          'is free. Nothing was written; free space or move the data folder',
        {
          details: {
            path: this.store.root,
            neededBytes: needed,
            inProgressBytes: others,
            minFreeBytes: this.minFreeBytes,
            freeBytes: free,
          },
        },
      )
    }
    this.outstanding.set(digest.hex, () => needed)
  }
}

/** A disk-full failure that freed its partial download says how much it gave back. */
export function withReleased(e: ShoalError, released: number): ShoalError {
  if (released <= 0 || e.code !== 'INSUFFICIENT_STORAGE') return e
  return new ShoalError(
    e.code,
    `${e.message} (the partial download was deleted: ${formatBytes(released)} released)`,
    {
      cause: e.cause,
      details: { ...e.details, releasedBytes: released },
    },
  )
}
