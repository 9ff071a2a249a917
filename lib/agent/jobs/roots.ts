/**
 * Where a task may touch the disk: only inside the agent's `jobs.roots`, judged on real paths
 * (symlinks resolved), so a job cannot write through a link to /etc or read a key from /root.
 * A path with a `..` component is refused outright rather than normalised: whoever wrote it
 * meant to leave the folder it names.
 */
import { lstat, realpath } from 'node:fs/promises'
import { dirname, join, relative, resolve } from 'node:path'
import { printable as clean } from '../../core/index.js'
import { errnoCode, ShoalError } from '../../errors/index.js'

/** Paths are shown whole (up to 1 KiB), control characters escaped. */
const printable = (p: string) => clean(p, 1024)

/** The config key the refusals name, so an operator knows what to change. */
export const ROOTS_KEY = 'jobs.roots'

/** The roots as real paths (a root that does not exist yet is kept as written). */
export async function realRoots(roots: readonly string[]): Promise<string[]> {
  return Promise.all(
    roots.map((r) =>
      realpath(r).catch((err) => {
        if (errnoCode(err) === 'ENOENT') return resolve(r)
        throw err
      }),
    ),
  )
}

/** True when `path` is `root` or below it (both real, absolute). */
export function isInside(path: string, root: string): boolean {
  const rel = relative(root, path)
  return rel === '' || (rel !== '..' && !rel.startsWith('../') && !rel.startsWith('/'))
}

function refuseTraversal(path: string, what: string): void {
  if (!path.startsWith('/') || path.split('/').includes('..'))
    throw new ShoalError(
      'INVALID_PATH',
      `${what} ${printable(path)} is not an absolute path without ".." components; nothing was written`,
      { details: { path } },
    )
}

function outside(what: string, shown: string, real: string, roots: readonly string[]): ShoalError {
  const resolvedNote = real === shown ? '' : ` (resolves to ${printable(real)})`
  const why =
    roots.length === 0
      ? `this agent has no ${ROOTS_KEY}: add the folders jobs may use to ${ROOTS_KEY} in its config`
      : `it is outside this agent's ${ROOTS_KEY} (${roots.map(printable).join(', ')})`
  return new ShoalError(
    'FORBIDDEN',
    `${what} ${printable(shown)}${resolvedNote}: ${why}; nothing was written`,
    {
      details: { path: shown, realPath: real, roots: [...roots] },
    },
  )
}

/**
 * The real path of a destination folder that may not exist yet: the deepest existing ancestor
 * resolved, the missing rest appended (it has no links, since it does not exist). A dangling
 * link on the way is refused: what it will point at once created is anyone's guess.
 */
export async function realDestination(path: string, roots: readonly string[], what: string): Promise<string> {
  refuseTraversal(path, what)
  const abs = resolve(path)
  const missing: string[] = []
  let p = abs
  for (;;) {
    const st = await lstat(p).catch((err) => {
      if (errnoCode(err) === 'ENOENT') return undefined
      throw err
    })
    if (st) break
    const up = dirname(p)
    if (up === p) break
    missing.unshift(p.slice(up === '/' ? 1 : up.length + 1))
    p = up
  }
  let real: string
  try {
    real = join(await realpath(p), ...missing)
  } catch (err) {
    throw new ShoalError(
      'INVALID_PATH',
      `${what} ${printable(path)}: ${printable(p)} cannot be resolved (${errnoCode(err) ?? String(err)}; a dangling link?); nothing was written`,
      { details: { path }, cause: err },
    )
  }
  if (!roots.some((r) => isInside(real, r))) throw outside(what, path, real, roots)
  return real
}

/** The real path of an existing source (file or folder) inside the roots. */
export async function realSource(path: string, roots: readonly string[], what: string): Promise<string> {
  refuseTraversal(path, what)
  let real: string
  try {
    real = await realpath(path)
  } catch (err) {
    const why = errnoCode(err) === 'ENOENT' ? 'no such file or folder' : (errnoCode(err) ?? String(err))
    throw new ShoalError('INVALID_PATH', `${what} ${printable(path)}: ${why}`, {
      details: { path },
      cause: err,
    })
  }
  if (!roots.some((r) => isInside(real, r))) throw outside(what, path, real, roots)
  return real
}

/**
 * A file that exists at `path` as a link leading outside the roots is refused: covering it
 * replaces the link (rename does not follow it), but the "already there?" check would read
 * through it, and an operator who sees the link expects the write to go where it points.
 */
export async function refuseLinkOutside(path: string, roots: readonly string[], what: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined)
  if (!st?.isSymbolicLink()) return
  const real = await realpath(path).catch(() => path)
  if (!roots.some((r) => isInside(real, r))) throw outside(what, path, real, roots)
}
