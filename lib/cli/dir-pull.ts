/**
 * PullCLI pull --res-type directory: fetch and check the manifest, build the tree in a temp
 * folder next to the destination (files through the agent, several at once; a file the old
 * tree already holds with the same size and sha256 is copied instead of fetched), then move it
 * under its final name. Nothing half-built ever has the final name: any failure (a timeout, a
 * hostile manifest, a full disk) removes the temp folder.
 *
 * Covering an existing tree is two renames (old tree aside, new tree in) and then removing the
 * old one, not one atomic swap: a reader between the renames sees no folder at all, never a mix.
 */
import { setMaxListeners } from 'node:events'
import { constants } from 'node:fs'
import { chmod, copyFile, lstat, mkdir, open, readFile, rm, stat, utimes } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { AgentClient } from '../agent/client/index.js'
import { DEFAULT_NAMESPACE, Digest, printable, type Tag } from '../core/index.js'
import { errnoCode, ShoalError } from '../errors/index.js'
import { chooseTarget, prepareDir, refuseIfAborted, tempBeside } from './destination.js'
import { localError, placeTree, removeTree } from './dir-place.js'
import type { DirProgress } from './dir-push.js'
import { type FetchProgress, fetchBlob, peerBytes } from './fetch.js'
import { checkFlagName, DEFAULT_FLAG, type FlagOptions, removeStaleFlag, writeFlag } from './flag-file.js'
import {
  eachLimit,
  hashFile,
  MAX_MANIFEST_BYTES,
  type Manifest,
  type ManifestEntry,
  parseManifest,
  totals,
} from './manifest.js'
import { type Progress, withProgressTimeout } from './watchdog.js'

export interface DirPullOptions {
  tag: Tag
  /** What the tag resolved to (the caller resolves it through the agent). */
  manifestDigest: Digest
  /** The folder the tree is created in. */
  dstPath: string
  /** The agent. */
  dstHost: string
  namespace?: string
  /** The tree's folder name (default the tag's file name). */
  name?: string
  /** Replace an existing folder of that name (default true). */
  isCover?: boolean
  /** With isCover false: the name to use when `name` is taken. */
  newName?: string
  /** Write `<folder><suffix>` once the tree is in place. */
  hasFlag?: boolean
  flag?: FlagOptions
  /** Seconds without progress (0 or undefined: none). */
  timeoutSeconds?: number
  /** Files fetched at once (default 8). */
  concurrency?: number
  onProgress?: (p: DirProgress) => void
  /** Caps the agent's download of each blob from peers, bytes/s (a job's bandwidth class; 0 = none). */
  ingressBytesPerSec?: number
  /** Sent to the agent as a bearer token (an agent bound beyond loopback asks for one). */
  agentToken?: string
  signal?: AbortSignal
}

export interface DirPullResult {
  tag: Tag
  digest: Digest
  /** Bytes of all files in the tree. */
  size: number
  path: string
  files: number
  /** Distinct contents fetched through the agent. */
  fetchedFiles: number
  /** Files copied locally: from the existing tree (same size and sha256), or a duplicate content. */
  localFiles: number
  seconds: number
  source: 'swarm'
  flag?: string
}

export async function pullDirectory(opts: DirPullOptions): Promise<DirPullResult> {
  const started = Date.now()
  const name = opts.name ?? opts.tag.fileName
  const isCover = opts.isCover ?? true
  const dir = await prepareDir(opts.dstPath)
  // Decided before anything is fetched: ALREADY_EXISTS without a way out fails at once.
  const target = await chooseTarget(dir, name, { isCover, newName: opts.newName })
  const there = await lstat(target).catch(() => undefined)
  if (there && !there.isDirectory())
    throw new ShoalError(
      'ALREADY_EXISTS',
      `${target} exists and is not a folder; a folder cannot replace it`,
      {
        details: { path: target },
      },
    )
  if (opts.hasFlag) checkFlagName(target, opts.flag?.suffix)
  // The previous version (under the folder's own name) is where unchanged files are copied from.
  const own = join(dir, name)
  const localRoot = (await lstat(own).catch(() => undefined))?.isDirectory() ? own : undefined
  return withProgressTimeout(
    `pull of ${opts.tag}`,
    opts.timeoutSeconds,
    async (signal, progress) => {
      // Every request in flight listens on this one signal.
      setMaxListeners(0, signal)
      // No deadline of the client's own: a blob's answer comes once the agent has all of it,
      // which for a large file takes as long as it takes; the watchdog is the deadline.
      const agent = new AgentClient(opts.dstHost, {
        timeoutMs: 0,
        ingressBytesPerSec: opts.ingressBytesPerSec,
        token: opts.agentToken,
      })
      const ns = opts.namespace ?? DEFAULT_NAMESPACE
      const manifest = await fetchManifest(agent, ns, opts.manifestDigest, dir, name, signal, progress)
      const tmp = tempBeside(dir, basename(target))
      let counts: { fetchedFiles: number; localFiles: number }
      try {
        await mkdir(tmp, { mode: 0o700 })
        counts = await materialise(manifest, tmp, { agent, ns, localRoot, signal, progress, opts })
        // A consumer waiting for the flag must not take the previous version's flag for this one.
        if (opts.hasFlag) await removeStaleFlag(target, opts.flag?.suffix)
        await refuseIfAborted(signal, tmp, target)
        await placeTree(tmp, target, isCover)
      } catch (err) {
        await removeTree(tmp).catch(() => {})
        throw localError(err, dir)
      }
      const t = totals(manifest)
      const flag = opts.hasFlag
        ? await writeFlag(
            target,
            { digest: opts.manifestDigest.toString(), size: t.bytes, tag: opts.tag.toString() },
            opts.flag ?? DEFAULT_FLAG,
          )
        : undefined
      return {
        tag: opts.tag,
        digest: opts.manifestDigest,
        size: t.bytes,
        path: target,
        files: t.files,
        ...counts,
        seconds: (Date.now() - started) / 1000,
        source: 'swarm' as const,
        ...(flag ? { flag } : {}),
      }
    },
    opts.signal,
  )
}

/** The manifest, through the agent into a temp file (verified), read back and checked. */
async function fetchManifest(
  agent: AgentClient,
  ns: string,
  digest: Digest,
  dir: string,
  name: string,
  signal: AbortSignal,
  progress: Progress,
): Promise<Manifest> {
  const tmp = tempBeside(dir, `${name}.manifest`)
  try {
    await fetchBlob(agent, ns, digest, tmp, { signal, onProgress: mover(progress) })
    const { size } = await stat(tmp)
    if (size > MAX_MANIFEST_BYTES)
      throw new ShoalError(
        'BAD_MANIFEST',
        `invalid directory manifest: ${size} bytes, more than the limit of ${MAX_MANIFEST_BYTES} (is the tag a file, not a directory?)`,
      )
    return parseManifest(await readFile(tmp))
  } finally {
    await rm(tmp, { force: true })
  }
}

/** A FetchProgress listener that touches the watchdog only when bytes really moved. */
function mover(progress: Progress, also?: (p: FetchProgress) => void): (p: FetchProgress) => void {
  const last = { swarm: -1, copy: -1, peers: -1 }
  return (p) => {
    const peers = peerBytes(p)
    if (p.bytes > last[p.phase] || peers > last.peers) {
      last[p.phase] = p.bytes
      last.peers = peers
      progress.touch()
    }
    also?.(p)
  }
}

interface Context {
  agent: AgentClient
  ns: string
  localRoot: string | undefined
  signal: AbortSignal
  progress: Progress
  opts: DirPullOptions
}

/** Builds the tree under `tmp`: folders, files (fetched or copied), then modes and mtimes. */
async function materialise(
  manifest: Manifest,
  tmp: string,
  ctx: Context,
): Promise<{ fetchedFiles: number; localFiles: number }> {
  const dirs = manifest.entries.filter((e) => e.type === 'dir')
  // Sorted by path: a parent is created before its children. Writable until the end.
  for (const e of dirs) await mkdir(join(tmp, e.path), { mode: 0o700 })
  const groups = new Map<string, ManifestEntry[]>()
  for (const e of manifest.entries)
    if (e.type === 'file') {
      const g = groups.get(e.digest as string)
      if (g) g.push(e)
      else groups.set(e.digest as string, [e])
    }
  const t = totals(manifest)
  let fetchedFiles = 0
  let localFiles = 0
  let filesDone = 0
  let doneBytes = 0
  const inflight = new Map<string, number>()
  const report = (step: DirProgress['step'], phase: FetchProgress['phase']) => {
    if (!ctx.opts.onProgress) return
    let bytes = doneBytes
    for (const n of inflight.values()) bytes += n
    ctx.opts.onProgress({ phase, step, bytes, total: t.bytes, filesDone, files: t.files })
  }
  await eachLimit([...groups.entries()], ctx.opts.concurrency ?? 8, async ([hex, group]) => {
    const digest = Digest.parse(hex)
    const first = group[0] as ManifestEntry
    const dest = join(tmp, first.path)
    const local = await copyLocal(ctx.localRoot, first, dest, digest, ctx)
    if (local) localFiles++
    else {
      const { size } = await fetchBlob(ctx.agent, ctx.ns, digest, dest, {
        signal: ctx.signal,
        onProgress: mover(ctx.progress, (p) => {
          inflight.set(hex, p.phase === 'copy' ? p.bytes : 0)
          report('fetch', p.phase)
        }),
      })
      inflight.delete(hex)
      if (size !== first.size)
        throw new ShoalError(
          'BAD_MANIFEST',
          `invalid directory manifest: "${printable(first.path)}" says ${first.size} bytes, its content has ${size}`,
        )
      fetchedFiles++
    }
    // Duplicates are copied before the first copy gets its mode: a mode of 0o000 would make it
    // unreadable. fetchBlob fsynced its file; a copy is fsynced in finishFile.
    for (const other of group.slice(1)) {
      const path = join(tmp, other.path)
      await copyFile(dest, path, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE)
      await finishFile(path, other, true)
      localFiles++
    }
    await finishFile(dest, first, local)
    filesDone += group.length
    doneBytes += first.size * group.length
    ctx.progress.touch()
    report('fetch', 'copy')
  })
  // Deepest first, so a folder made read-only no longer needs to be written into.
  for (const e of [...dirs].reverse()) await setTimes(join(tmp, e.path), e)
  await setTimes(tmp, manifest.root)
  return { fetchedFiles, localFiles }
}

/**
 * Copies `localRoot/entry.path` to `dest` when it is a regular file of the same size whose copy
 * hashes to the digest (the copy is hashed, not the source: a file changing meanwhile cannot
 * slip in). False when there is nothing usable; `dest` is then absent.
 */
async function copyLocal(
  localRoot: string | undefined,
  entry: ManifestEntry,
  dest: string,
  digest: Digest,
  ctx: Pick<Context, 'signal' | 'progress'>,
): Promise<boolean> {
  if (!localRoot) return false
  const src = join(localRoot, entry.path)
  const st = await lstat(src).catch(() => undefined)
  if (!st?.isFile() || st.size !== entry.size) return false
  try {
    await copyFile(src, dest, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE)
    const got = await hashFile(dest, ctx.signal, () => ctx.progress.touch())
    if (got.digest.equals(digest)) return true
  } catch (err) {
    // An unreadable old file is fetched instead; a failure writing here is real.
    if (errnoCode(err) !== 'EACCES' && errnoCode(err) !== 'ENOENT') throw err
  }
  await rm(dest, { force: true })
  return false
}

/** With the manifest's mode and mtime, and durable (`sync`: a copy; fetchBlob fsyncs its own). */
async function finishFile(path: string, e: ManifestEntry, sync: boolean): Promise<void> {
  if (sync) {
    const fh = await open(path, 'r')
    try {
      await fh.sync()
    } finally {
      await fh.close()
    }
  }
  await setTimes(path, e)
}

async function setTimes(path: string, e: { mode: number; mtimeMs: number }): Promise<void> {
  await chmod(path, e.mode)
  await utimes(path, e.mtimeMs / 1000, e.mtimeMs / 1000)
}
