/**
 * PullCLI's and RemoveCLI's NAME: either a full tag (used as is), or a file name looked up in
 * the tag listing, narrowed by --src-host (the host that pushed it), --src-dir and --version.
 * The listing is a parameter (`Lister`) so the same code runs against the agent's or the
 * proxy's list API, and against a fake in tests.
 */
import { LATEST, printable, Tag } from '../core/index.js'
import { ShoalError } from '../errors/index.js'

export interface ListPage {
  tags: string[]
  /** Pass as `after` to get the next page; absent on the last page. */
  next?: string
}

export type Lister = (
  prefix: string,
  opts: { after?: string; limit?: number; signal?: AbortSignal },
) => Promise<ListPage>

export interface ResolveNameOptions {
  srcHost?: string
  srcDir?: string
  version?: string
  lister?: Lister
  signal?: AbortSignal
  /** Tags scanned at most before asking the user to narrow the search. */
  maxScan?: number
  pageSize?: number
  /** Candidates listed in the "several tags match" error. */
  maxShown?: number
  /** Called after each page (a watchdog's touch: a long listing that moves is progress). */
  onPage?: () => void
}

export const MAX_SCAN = 100_000

/** A NAME that parses as a tag of the srcHost-/srcDir-fileName form. */
export function asFullTag(name: string): Tag | undefined {
  if (!name.includes('-/')) return undefined
  try {
    return Tag.parse(name)
  } catch {
    return undefined
  }
}

/**
 * The tag NAME stands for. Without --version a file name means its `latest` tag when there is
 * one; otherwise every version is a candidate, so an ambiguous NAME lists them rather than
 * picking one: a script must never pull a version it did not ask for.
 */
export async function resolveName(name: string, opts: ResolveNameOptions = {}): Promise<Tag> {
  const full = asFullTag(name)
  if (full) return opts.version ? full.withVersion(opts.version) : full
  if (name.includes('/'))
    throw new ShoalError(
      'USAGE',
      `"${printable(name)}" is neither a tag (srcHost-/srcDir-fileName[:version]) nor a file name`,
    )
  if (!opts.lister)
    throw new ShoalError(
      'USAGE',
      `"${printable(name)}" is a file name and this client cannot list tags to find it: pass the full tag (--tag)`,
    )
  const srcDir = opts.srcDir?.replace(/\/+$/, '') || (opts.srcDir ? '/' : undefined)
  const prefix = opts.srcHost ? `${opts.srcHost}-${srcDir && srcDir !== '/' ? srcDir : ''}` : ''
  const maxScan = opts.maxScan ?? MAX_SCAN
  const matches: Tag[] = []
  let scanned = 0
  let after: string | undefined
  for (;;) {
    const page = await opts.lister(prefix, {
      after,
      limit: Math.min(opts.pageSize ?? 1000, maxScan - scanned),
      signal: opts.signal,
    })
    scanned += page.tags.length
    opts.onPage?.()
    for (const raw of page.tags) {
      const tag = asFullTag(raw)
      if (tag && matchesName(tag, name, opts.srcHost, srcDir, opts.version)) matches.push(tag)
    }
    if (!page.next || page.tags.length === 0) break
    if (scanned >= maxScan)
      throw new ShoalError(
        'USAGE',
        `looked through ${scanned} tags${prefix ? ` starting with "${printable(prefix)}"` : ''} for "${printable(name)}" without reaching the end: narrow the search with --src-host (and --src-dir), or pass the full tag`,
      )
    after = page.next
  }
  const searched = describeSearch(name, opts, srcDir, scanned)
  if (matches.length === 0) throw new ShoalError('TAG_NOT_FOUND', `no tag matches ${searched}`)
  const chosen = opts.version ? matches : preferLatest(matches)
  if (chosen.length === 1) return chosen[0] as Tag
  const shown = opts.maxShown ?? 20
  const list = chosen.slice(0, shown).join(', ')
  const more = chosen.length > shown ? ` and ${chosen.length - shown} more` : ''
  throw new ShoalError(
    'USAGE',
    `${chosen.length} tags match ${searched}: ${list}${more}; pass the full tag or narrow with --src-host, --src-dir, --version`,
    { details: { candidates: chosen.map(String) } },
  )
}

function matchesName(
  tag: Tag,
  name: string,
  srcHost: string | undefined,
  srcDir: string | undefined,
  version: string | undefined,
): boolean {
  if (tag.fileName !== name) return false
  if (srcHost !== undefined && tag.srcHost !== srcHost) return false
  if (srcDir !== undefined && (tag.srcDir.replace(/\/+$/, '') || '/') !== srcDir) return false
  return version === undefined || tag.version === version
}

function preferLatest(tags: Tag[]): Tag[] {
  const latest = tags.filter((t) => t.version === LATEST)
  return latest.length > 0 ? latest : tags
}

function describeSearch(
  name: string,
  opts: ResolveNameOptions,
  srcDir: string | undefined,
  scanned: number,
): string {
  const narrowed = [
    opts.srcHost !== undefined ? `--src-host ${opts.srcHost}` : '',
    srcDir !== undefined ? `--src-dir ${srcDir}` : '',
    opts.version !== undefined ? `--version ${opts.version}` : '',
  ].filter(Boolean)
  return `file name "${printable(name)}"${narrowed.length ? ` (${narrowed.join(', ')})` : ''} among ${scanned} listed tag${scanned === 1 ? '' : 's'}`
}

/** The Lister of the agent's or the proxy's client (GET /list/:prefix, paged). */
export function clientLister(client: { list: Lister }): Lister {
  return (prefix, opts) => client.list(prefix, opts)
}
