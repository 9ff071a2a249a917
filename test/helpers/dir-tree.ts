/**
 * Directory-push test helpers: a tree's snapshot (every entry's
 * type, mode, content hash and mtime) to compare a pulled tree with what was pushed.
 */
import { createHash } from 'node:crypto'
import { lstat, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface TreeEntry {
  path: string
  type: 'file' | 'dir'
  mode: number
  sha?: string
  mtimeMs: number
}

/** Every entry under `root` (root itself as ''), sorted; links and others are listed as 'other'. */
export async function snapshot(root: string): Promise<TreeEntry[]> {
  const out: TreeEntry[] = []
  const walk = async (rel: string) => {
    const st = await lstat(join(root, rel))
    const base = { path: rel, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs }
    if (st.isDirectory()) {
      out.push({ ...base, type: 'dir' })
      for (const name of await readdir(join(root, rel))) await walk(rel ? `${rel}/${name}` : name)
    } else if (st.isFile()) {
      const sha = createHash('sha256')
        .update(await readFile(join(root, rel)))
        .digest('hex')
      out.push({ ...base, type: 'file', sha })
    } else throw new Error(`unexpected entry ${rel} in ${root}`)
  }
  await walk('')
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
}

/** The differences between two trees (mtimes within 1 ms: utimes takes seconds as a double). */
export function treeDiff(a: TreeEntry[], b: TreeEntry[]): string[] {
  const diffs: string[] = []
  const bm = new Map(b.map((e) => [e.path, e]))
  for (const e of a) {
    const o = bm.get(e.path)
    bm.delete(e.path)
    if (!o) diffs.push(`only in the first: ${e.path}`)
    else if (o.type !== e.type || o.mode !== e.mode || o.sha !== e.sha)
      diffs.push(`${e.path}: ${JSON.stringify(e)} vs ${JSON.stringify(o)}`)
    else if (Math.abs(o.mtimeMs - e.mtimeMs) >= 1) diffs.push(`${e.path}: mtime ${e.mtimeMs} vs ${o.mtimeMs}`)
  }
  for (const p of bm.keys()) diffs.push(`only in the second: ${p}`)
  return diffs
}
