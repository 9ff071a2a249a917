/**
 * Disk space: how much a file system still takes and how much a (sparse) file really holds, so
 * work that cannot fit is refused before it writes, and a full disk is reported with its path
 * and free space rather than a bare ENOSPC.
 */
import { statfsSync } from 'node:fs'
import { stat, statfs } from 'node:fs/promises'
import { dirname } from 'node:path'
import { formatBytes } from '../core/index.js'
import { errnoCode } from '../errors/index.js'

/** errno codes that mean "no room": the file system is full, or the user's quota is. */
export function isNoSpaceError(err: unknown): boolean {
  const code = errnoCode(err)
  return code === 'ENOSPC' || code === 'EDQUOT'
}

/** Bytes an unprivileged writer may still use on the file system holding `path` (f_bavail). */
export async function freeBytes(path: string): Promise<number> {
  const s = await statfs(path)
  return s.bavail * s.bsize
}

/**
 * The same, synchronously, from `path` or its nearest existing parent (the file may be gone),
 * for error messages; undefined when the file system cannot be asked. Only runs on the rare
 * full-disk path, where a blocking statfs costs nothing that matters.
 */
export function freeBytesSync(path: string): number | undefined {
  for (let p = path; ; p = dirname(p)) {
    try {
      const s = statfsSync(p)
      return s.bavail * s.bsize
    } catch {
      if (dirname(p) === p) return undefined
    }
  }
}

/** Bytes `path` occupies on disk (its blocks: a sparse file counts what was written); 0 if absent. */
export async function allocatedBytes(path: string): Promise<number> {
  try {
    const st = await stat(path)
    return Math.min(st.blocks * 512, st.size)
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 0
    throw err
  }
}

/** "the disk is full at PATH (ENOSPC): 0 B free there": names the path and the free space. */
export function noSpaceMessage(err: unknown, path: string): string {
  const code = errnoCode(err) ?? 'ENOSPC'
  const free = freeBytesSync(path)
  const what = code === 'EDQUOT' ? 'the disk quota is exhausted' : 'the disk is full'
  const left = free === undefined ? '' : `: ${formatBytes(free)} free there`
  return `${what} at ${path} (${code})${left}`
}
