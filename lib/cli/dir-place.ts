/**
 * The last step of a directory pull: the finished temp tree goes under its final name. Not
 * existing: one rename. Covering: the old tree is renamed aside, the new one renamed in, then
 * the old one removed: two renames, not one atomic swap (a reader between them sees no folder,
 * never a mix of versions). Not covering: a folder that appeared meanwhile is kept.
 */
import { chmod, lstat, readdir, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { errnoCode, isAbortError, isTimeoutError, ShoalError } from '../errors/index.js'
import { isNoSpaceError, noSpaceMessage } from '../store/space.js'
import { syncDir, tempBeside } from './destination.js'

/** Moves the finished tree to `target`; covering moves the old tree aside first, then removes it. */
export async function placeTree(tmp: string, target: string, isCover: boolean): Promise<void> {
  const old = await lstat(target).catch(() => undefined)
  if (old && !isCover)
    throw new ShoalError(
      'ALREADY_EXISTS',
      `${target} appeared while pulling and --is-cover is false; it was kept`,
    )
  // The tree's own entries are durable before it takes the final name (its files were fsynced).
  await syncTree(tmp)
  if (!old) {
    try {
      await rename(tmp, target)
    } catch (err) {
      const code = errnoCode(err)
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR')
        throw new ShoalError('ALREADY_EXISTS', `${target} appeared while pulling; it was kept`, {
          cause: err,
        })
      throw err
    }
    await syncDir(dirname(target))
    return
  }
  const aside = tempBeside(dirname(target), `${basename(target)}.old`)
  await rename(target, aside)
  try {
    await rename(tmp, target)
  } catch (err) {
    await rename(aside, target).catch(() => {})
    throw err
  }
  // The rename is durable before the caller writes a flag file saying the tree is there.
  await syncDir(dirname(target))
  await removeTree(aside).catch(() => {})
}

/** fsync of every folder of a tree, deepest first (a read-only folder can still be opened to sync). */
async function syncTree(root: string): Promise<void> {
  for (const entry of await readdir(root, { withFileTypes: true }))
    if (entry.isDirectory()) await syncTree(join(root, entry.name))
  await syncDir(root)
}

/** rm -r that also removes folders pulled read-only (their modes come from the manifest). */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true })
  } catch (err) {
    if (errnoCode(err) !== 'EACCES' && errnoCode(err) !== 'EPERM') throw err
    await makeWritable(path)
    await rm(path, { recursive: true, force: true })
  }
}

async function makeWritable(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined)
  if (!st?.isDirectory()) return
  await chmod(path, 0o700)
  for (const name of await readdir(path)) await makeWritable(join(path, name))
}

/** A file-system failure while building the tree, as a ShoalError naming the path. */
export function localError(err: unknown, dir: string): unknown {
  if (err instanceof ShoalError || isAbortError(err) || isTimeoutError(err)) return err
  const where = (err as NodeJS.ErrnoException).path ?? dir
  if (isNoSpaceError(err))
    return new ShoalError(
      'INSUFFICIENT_STORAGE',
      `cannot write into ${dir}: ${noSpaceMessage(err, dir)}; nothing was written under the final name`,
      { cause: err },
    )
  const code = errnoCode(err)
  if (!code) return err
  return new ShoalError(
    'IO_ERROR',
    `cannot build the folder in ${dir}: ${code} on ${where}; nothing was written under the final name`,
    {
      cause: err,
      details: { path: where },
    },
  )
}
