/**
 * The agent's memory of immutable tags: `<dataDir>/tags/<sha256(tag)>.json` per version (any
 * version but `latest`) this agent has resolved, with its digest and meta.
 *
 * Why: an immutable version never points elsewhere (build-index refuses it; a deleted one
 * leaves a tombstone), so the digest an agent once got for it stays right. With it a pull of
 * a version this host already resolved works while build-index is unreachable: the blob then
 * comes from the agent's cache (or the swarm) as always. `latest` moves, so it is never kept.
 *
 * - The file name is a hash of the canonical tag: no tag can name a path outside the folder.
 * - Files are written to a temp name and renamed (readers see old or new, never a part).
 * - At most `maxEntries` files; past it the least recently resolved go (file mtimes at start,
 *   then the order of resolves), so the folder stays small whatever is pulled.
 * - A file that cannot be read back (corrupt, another tag's, a digest that does not parse) is
 *   ignored and removed: the entry is then simply unknown, as if never resolved.
 */
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rm, stat, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from '../../config/index.js'
import { Digest, TAG_TYPES, type Tag, type TagMeta, type TagType, tagMetaOf } from '../../core/index.js'
import { errnoCode, ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { atomicWriteFile } from '../../store/fsutil.js'

export const DEFAULT_TAG_CACHE_ENTRIES = 10_000
/** A record is a few hundred bytes (a 512-byte tag, a 1 KiB desc): more is not ours. */
const MAX_FILE_BYTES = 16 << 10
const ENTRY = /^([0-9a-f]{64})\.json$/
/** atomicWriteFile's temp files, left behind by a crash mid-write. */
const STALE = /^tmp-/

const FileSchema = z.object({
  v: z.literal(1),
  tag: z.string(),
  digest: z.string(),
  type: z.enum(TAG_TYPES).optional(),
  desc: z.string().optional(),
  resolvedAt: z.string(),
})

export interface CachedTag {
  tag: string
  digest: Digest
  type?: TagType
  desc?: string
  /** When build-index last answered for it (ISO 8601). */
  resolvedAt: string
}

export class TagCache {
  /** File names by age: the first is the least recently resolved. */
  private readonly names = new Map<string, true>()

  constructor(
    readonly dir: string,
    private readonly opts: { maxEntries: number; logger: Logger; now?: () => number },
  ) {}

  get size(): number {
    return this.names.size
  }

  /** Creates the folder, removes temp files a crash left, and learns the entries' ages. */
  async init(): Promise<void> {
    const found: Array<{ name: string; mtimeMs: number }> = []
    try {
      await mkdir(this.dir, { recursive: true })
      for (const name of await readdir(this.dir)) {
        if (STALE.test(name)) await rm(join(this.dir, name), { force: true })
        else if (ENTRY.test(name)) {
          const st = await stat(join(this.dir, name)).catch(() => undefined)
          if (st?.isFile()) found.push({ name, mtimeMs: st.mtimeMs })
        }
      }
    } catch (err) {
      throw new ShoalError('IO_ERROR', `cannot initialise the tag cache in ${this.dir}`, { cause: err })
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs || (a.name < b.name ? -1 : 1))
    this.names.clear()
    for (const f of found) this.names.set(f.name, true)
    await this.trim()
  }

  /** What the tag resolved to last time, or undefined (never for `latest`). */
  async get(tag: Tag): Promise<CachedTag | undefined> {
    if (tag.isLatest) return undefined
    const name = fileName(tag)
    if (!this.names.has(name)) return undefined
    const path = join(this.dir, name)
    let raw: Buffer
    try {
      raw = await readFile(path)
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        this.names.delete(name)
        return undefined
      }
      throw new ShoalError('IO_ERROR', `cannot read the tag cache entry ${path}`, { cause: err })
    }
    const entry = decode(raw, tag)
    if (!entry) {
      this.opts.logger.warn({ tag: tag.toString(), path }, 'tag cache entry unreadable; removed')
      await this.drop(name)
    }
    return entry
  }

  /**
   * Remembers what build-index answered for an immutable version (`latest` is ignored). An
   * entry already saying the same is only marked as recently used, not rewritten.
   */
  async remember(tag: Tag, info: { digest: Digest; type?: TagType; desc?: string }): Promise<void> {
    if (tag.isLatest || this.opts.maxEntries === 0) return
    const name = fileName(tag)
    const path = join(this.dir, name)
    const meta: TagMeta = tagMetaOf(info)
    const known = await this.get(tag)
    if (known?.digest.equals(info.digest) && known.type === meta.type && known.desc === meta.desc) {
      this.touch(name)
      await this.stamp(path)
      return
    }
    const body = {
      v: 1,
      tag: tag.toString(),
      digest: info.digest.toString(),
      ...meta,
      resolvedAt: new Date(this.now()).toISOString(),
    }
    try {
      await atomicWriteFile(this.dir, path, Buffer.from(JSON.stringify(body)))
    } catch (err) {
      throw new ShoalError('IO_ERROR', `cannot write the tag cache entry ${path}`, { cause: err })
    }
    this.touch(name)
    await this.stamp(path)
    await this.trim()
  }

  /** The entry's mtime is its last resolve (the order after a restart); best effort. */
  private async stamp(path: string): Promise<void> {
    const now = new Date(this.now())
    await utimes(path, now, now).catch(() => undefined)
  }

  /** Forgets the tag (build-index says it is gone). */
  async forget(tag: Tag): Promise<void> {
    const name = fileName(tag)
    if (this.names.has(name)) await this.drop(name)
  }

  private touch(name: string): void {
    this.names.delete(name)
    this.names.set(name, true)
  }

  private async trim(): Promise<void> {
    for (const name of this.names.keys()) {
      if (this.names.size <= this.opts.maxEntries) return
      await this.drop(name)
    }
  }

  private async drop(name: string): Promise<void> {
    this.names.delete(name)
    await rm(join(this.dir, name), { force: true }).catch((err) => {
      this.opts.logger.warn({ err, path: join(this.dir, name) }, 'cannot remove a tag cache entry')
    })
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now()
  }
}

/** The entry's file name: a hash, so no tag (with '/', '..' or whatever) escapes the folder. */
export function tagCacheFileName(tag: Tag): string {
  return fileName(tag)
}

function fileName(tag: Tag): string {
  return `${createHash('sha256').update(tag.toString(), 'utf8').digest('hex')}.json`
}

function decode(raw: Buffer, tag: Tag): CachedTag | undefined {
  if (raw.length > MAX_FILE_BYTES) return undefined
  let value: unknown
  try {
    value = JSON.parse(raw.toString('utf8'))
  } catch {
    return undefined
  }
  const parsed = FileSchema.safeParse(value)
  // Another tag's record under this name would be a bug or tampering: never answer with it.
  if (!parsed.success || parsed.data.tag !== tag.toString() || !Digest.isValid(parsed.data.digest))
    return undefined
  const d = parsed.data
  return { tag: d.tag, digest: Digest.parse(d.digest), ...tagMetaOf(d), resolvedAt: d.resolvedAt }
}
