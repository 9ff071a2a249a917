/**
 * The eviction rule both caches share (the origin's, lib/origin/server/cache-policy.ts, and the
 * agent's, lib/agent/server/cache-policy.ts): a blob unused for `idleMs` goes, and above the
 * high watermark the least recently used go until the low watermark is reached. What counts as
 * use, and what must never be evicted, is each cache's own business: it passes only the blobs
 * it may evict, and its `evict` may still say no (the blob became busy meanwhile).
 */
import { statfs } from 'node:fs/promises'

export interface CachedBlob {
  size: number
  /** Last use, ms since the epoch. */
  lastUsed: number
}

export type EvictionReason = 'idle' | 'watermark'

/**
 * Bytes to free to get down to `low`; 0 while at or under `high`. Both at most 1: shares of the
 * disk holding `root` in use (as df counts it: blocks in use against those plus the ones an
 * unprivileged writer may take, so reserved blocks are not use). Both above 1: bytes of cached
 * blobs (`cachedBytes`).
 */
export async function bytesOverWatermark(
  root: string,
  high: number,
  low: number,
  cachedBytes: () => number,
): Promise<number> {
  if (high > 1) {
    const bytes = cachedBytes()
    return bytes > high ? bytes - low : 0
  }
  const fs = await statfs(root)
  const used = (fs.blocks - fs.bfree) * fs.bsize
  const total = used + fs.bavail * fs.bsize
  return total > 0 && used / total > high ? used - low * total : 0
}

/**
 * Evicts from `candidates`, least recently used first: every one idle for `idleMs` (0: none for
 * idleness), then more while `toFree` bytes remain to be freed, at most `max` in all. A blob
 * `evict` refuses (false) is skipped and frees nothing. Resolves with what went.
 */
export async function evictLeastRecentlyUsed<T extends CachedBlob>(
  candidates: Iterable<T>,
  opts: {
    now: number
    idleMs: number
    toFree: number
    max: number
    evict: (blob: T, reason: EvictionReason) => Promise<boolean>
  },
): Promise<{ evicted: number; freed: number }> {
  const sorted = [...candidates].sort((a, b) => a.lastUsed - b.lastUsed)
  let { toFree } = opts
  let evicted = 0
  let freed = 0
  for (const blob of sorted) {
    if (evicted >= opts.max) break
    const idle = opts.idleMs > 0 && opts.now - blob.lastUsed >= opts.idleMs
    if (!idle && toFree <= 0) break // sorted by last use: nothing further is idle either
    if (!(await opts.evict(blob, idle ? 'idle' : 'watermark'))) continue
    evicted++
    freed += blob.size
    toFree -= blob.size
  }
  return { evicted, freed }
}
