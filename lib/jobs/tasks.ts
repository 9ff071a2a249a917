/**
 * What the controller reads off a DistributionTask: its effective phase (a terminal status
 * about an older generation of the spec is stale: the task is to be run again), its deadline,
 * the run it belongs to, and the tag a push made. And the tag a push is made under.
 */
import { basename, dirname } from 'node:path'
import { Tag } from '../core/tag.js'
import { toShoalError } from '../errors/index.js'
import {
  ANNOTATION_DEADLINE,
  ANNOTATION_RUN,
  type Distribution,
  type DistributionTask,
  type TaskPhaseT,
  type TaskSpecT,
} from './kinds.js'

export function taskPhase(t: DistributionTask): TaskPhaseT {
  const s = t.status
  if (!s) return 'Pending'
  const terminal = s.phase === 'Succeeded' || s.phase === 'Failed'
  if (terminal && (s.observedGeneration ?? 0) < t.metadata.generation) return 'Pending'
  return s.phase
}

export function isFinished(phase: TaskPhaseT): boolean {
  return phase === 'Succeeded' || phase === 'Failed'
}

/** The run a task was last (re)started at (0 when the annotation is missing or garbled). */
export function taskRun(t: DistributionTask): number {
  const n = Number(t.metadata.annotations?.[ANNOTATION_RUN])
  return Number.isInteger(n) && n > 0 ? n : 0
}

/** Milliseconds since the epoch after which an unfinished task fails; undefined: none. */
export function taskDeadline(t: DistributionTask): number | undefined {
  if (t.spec.options.timeoutSeconds === 0) return undefined
  const at = Date.parse(t.metadata.annotations?.[ANNOTATION_DEADLINE] ?? '')
  if (Number.isFinite(at)) return at
  return Date.parse(t.metadata.creationTimestamp) + t.spec.options.timeoutSeconds * 1000
}

export function deadlineFrom(now: Date, timeoutSeconds: number): string | undefined {
  return timeoutSeconds === 0 ? undefined : new Date(now.getTime() + timeoutSeconds * 1000).toISOString()
}

/**
 * The tag a push is made under: the source host, folder and name, with a version unique to the
 * job (its uid) and the run (a rerun pushes again under a new version: versions are immutable,
 * and the file may have changed). Throws INVALID_TAG naming the problem (a path like "/").
 */
export function pushTag(d: Distribution, host: string, path: string, run: number): string {
  const version = `${d.metadata.name.slice(0, 96)}-${d.metadata.uid.replace(/-/g, '').slice(0, 8)}-r${run}`
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 128)
  return Tag.from({ srcHost: host, srcDir: dirname(path), fileName: basename(path), version }).toString()
}

/** The push's tag as checked by Tag (undefined with the reason when it cannot be made). */
export function tryPushTag(
  d: Distribution,
  host: string,
  path: string,
  run: number,
): { tag: string } | { error: string } {
  try {
    return { tag: pushTag(d, host, path, run) }
  } catch (err) {
    const e = toShoalError(err)
    return { error: `${e.code}: ${e.message}` }
  }
}

/** The tag a finished push made: the agent's report (status.path) when it is a tag, else the spec's. */
export function pushedTag(push: DistributionTask): string {
  const reported = push.status?.path
  return reported && reported !== push.spec.tag && Tag.isValid(reported) ? reported : push.spec.tag
}

/** The fields whose change re-executes a task (attempt and cancelled are the controller's levers). */
export function sameWork(a: TaskSpecT, b: TaskSpecT): boolean {
  const pick = (s: TaskSpecT) =>
    stable({
      host: s.host,
      action: s.action,
      sourcePath: s.sourcePath,
      tag: s.tag,
      path: s.path,
      name: s.name,
      options: s.options,
    })
  return pick(a) === pick(b)
}

/** JSON with sorted keys, undefined members dropped: equal values give equal strings. */
export function stable(value: unknown): string {
  return JSON.stringify(value, (_k, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, (v as Record<string, unknown>)[k]]),
        )
      : v,
  )
}
