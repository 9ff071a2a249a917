/**
 * One task's transfer, by the clients' own code paths: a pull is PullCLI's `pullAny` against
 * this agent's local API (temp file, digest check, fsync, atomic rename, cover/new-name, flag
 * files, the CSGW fallback), a push is PushCLI's `push` / `pushDirectory` through the proxy.
 * What the job adds is checked first: every path inside `jobs.roots`, real paths only, and
 * names that are names.
 */
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { checkName } from '../../cli/destination.js'
import { pushDirectory } from '../../cli/dir-push.js'
import type { FlagOptions } from '../../cli/flag-file.js'
import { pullAny } from '../../cli/pull-any.js'
import { push } from '../../cli/push.js'
import { printable, Tag } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import type { TaskSpecT } from '../../jobs/kinds.js'
import { realDestination, realSource, refuseLinkOutside } from './roots.js'

export interface ExecuteContext {
  /** This agent's local API (PullCLI's --dst-host). */
  agent: string
  /** The proxy pushes go through. */
  proxy: string
  /** The host name the agent goes by in jobs (the srcHost of a push without a full tag). */
  hostName: string
  /** Real paths of jobs.roots. */
  roots: readonly string[]
  csgw?: string
  flag: FlagOptions
  /** jobs.bandwidthClasses: class name → bytes/s (0 = unlimited). */
  bandwidthClasses: Readonly<Record<string, number>>
  signal: AbortSignal
  /** Bytes moved so far (cheap: called per chunk). */
  onBytes: (bytes: number) => void
}

export interface TaskOutcome {
  bytes: number
  seconds: number
  digest: string
  /** The final path (pull) or the tag pushed (push). */
  path: string
  source?: 'swarm' | 'csgw' | 'local'
}

export async function executeTask(spec: TaskSpecT, ctx: ExecuteContext): Promise<TaskOutcome> {
  return spec.action === 'pull' ? executePull(spec, ctx) : executePush(spec, ctx)
}

function parseTag(tag: string): Tag {
  try {
    return Tag.parse(tag)
  } catch (err) {
    throw new ShoalError(
      'INVALID_TAG',
      `the task's tag ${printable(tag)} is not a tag: ${(err as Error).message}`,
      {
        cause: err,
      },
    )
  }
}

async function executePull(spec: TaskSpecT, ctx: ExecuteContext): Promise<TaskOutcome> {
  if (spec.path === undefined)
    throw new ShoalError('INVALID', 'a pull task needs spec.path (the destination folder)')
  const tag = parseTag(spec.tag)
  checkName(tag.fileName, "tag's file name")
  if (spec.name !== undefined) checkName(spec.name, 'spec.name')
  const ingressBytesPerSec = classRate(spec.options.bandwidthClass, ctx.bandwidthClasses, ctx.hostName)
  const dir = await realDestination(spec.path, ctx.roots, 'destination folder')
  await refuseLinkOutside(join(dir, tag.fileName), ctx.roots, 'destination')
  if (spec.name !== undefined) await refuseLinkOutside(join(dir, spec.name), ctx.roots, 'destination')
  const r = await pullAny({
    tag,
    dstPath: dir,
    dstHost: ctx.agent,
    timeoutSeconds: spec.options.stallSeconds,
    isCover: spec.options.isCover,
    newName: spec.name,
    hasFlag: spec.options.hasFlag,
    flag: ctx.flag,
    resType: spec.options.resType,
    csgw: ctx.csgw,
    onProgress: (p) => ctx.onBytes(p.bytes),
    ingressBytesPerSec,
    signal: ctx.signal,
  })
  return {
    bytes: r.size,
    seconds: r.seconds,
    digest: r.digest.toString(),
    path: r.path,
    source: r.source,
  }
}

/**
 * The cap of a job's bandwidth class on this agent (undefined: the job names none). An unknown
 * class fails the task before anything is touched, naming the classes this agent has.
 */
export function classRate(
  name: string | undefined,
  classes: Readonly<Record<string, number>>,
  hostName: string,
): number | undefined {
  if (name === undefined) return undefined
  const rate = Object.hasOwn(classes, name) ? classes[name] : undefined
  if (rate !== undefined) return rate
  const known = Object.keys(classes)
  throw new ShoalError(
    'INVALID',
    `bandwidth class ${printable(name)} is not configured on agent ${hostName} (jobs.bandwidthClasses: ${
      known.length === 0 ? 'none' : known.join(', ')
    }); nothing was written`,
  )
}

async function executePush(spec: TaskSpecT, ctx: ExecuteContext): Promise<TaskOutcome> {
  if (spec.sourcePath === undefined)
    throw new ShoalError('INVALID', 'a push task needs spec.sourcePath (the file or folder to push)')
  const tag = parseTag(spec.tag)
  const src = await realSource(spec.sourcePath, ctx.roots, 'source')
  const isDir = (await stat(src)).isDirectory()
  const want = spec.options.resType
  if (isDir !== (want === 'directory'))
    throw new ShoalError(
      'INVALID_PATH',
      `source ${printable(spec.sourcePath)} is a ${isDir ? 'folder' : 'file'}, but the job's options.resType is ${want}; nothing was pushed`,
    )
  // The producer's flag (PushCLI --has-flag F) is not waited for: hasFlag is the targets' option
  // (write a flag after the file); a job is started once the source is complete.
  if (isDir) {
    const r = await pushDirectory({
      srcPath: src,
      tag,
      dstHost: ctx.proxy,
      timeoutSeconds: spec.options.stallSeconds,
      onProgress: (p) => ctx.onBytes(p.bytes),
      signal: ctx.signal,
    })
    return { bytes: r.size, seconds: r.seconds, digest: r.digest.toString(), path: r.tag.toString() }
  }
  const r = await push({
    srcPath: src,
    srcHost: ctx.hostName,
    tag: tag.toString(),
    dstHost: ctx.proxy,
    timeoutSeconds: spec.options.stallSeconds,
    onProgress: (p) => ctx.onBytes(p.bytes),
    signal: ctx.signal,
  })
  return { bytes: r.size, seconds: r.seconds, digest: r.digest.toString(), path: r.tag.toString() }
}
