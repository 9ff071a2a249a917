/**
 * A Distribution's status from its tasks: one line per target (and one for the push), counts,
 * the overall phase and the Complete/Failed conditions. Timestamps of lines and conditions that
 * did not change are kept, so summarising the same state twice gives the same status (the
 * controller writes only when it differs).
 */
import type {
  ConditionT,
  Distribution,
  DistributionStatusT,
  DistributionTask,
  TargetStatusT,
  TaskPhaseT,
} from './kinds.js'
import { CANCELLED_ERROR, MAX_DISTRIBUTION_NAME, pullName, pushName } from './reconcile.js'
import { pushedTag, taskPhase, tryPushTag } from './tasks.js'

/** A transition of a target, the push or the whole job: the seam for the event log. */
export interface JobTransition {
  namespace: string
  distribution: string
  /** 'job', 'push', or 'target'. */
  subject: 'job' | 'push' | 'target'
  host?: string
  path?: string
  from: TaskPhaseT | undefined
  to: TaskPhaseT
  /** The error of a failure, or the conditions' message for the job. */
  message?: string
}

const MAX_NAMED_FAILURES = 5

export function summarise(d: Distribution, tasks: DistributionTask[], now: Date): DistributionStatusT {
  const prev = d.status
  const byName = new Map(tasks.map((t) => [t.metadata.name, t]))
  const name = d.metadata.name
  const { spec } = d
  let tag: string | undefined
  let push: TargetStatusT | undefined
  /** Why targets without a task of the current tag are failed (undefined: they wait). */
  let blocked: string | undefined = spec.cancelled ? CANCELLED_ERROR : undefined

  if (name.length > MAX_DISTRIBUTION_NAME)
    blocked = `INVALID: the job name is longer than ${MAX_DISTRIBUTION_NAME} characters`
  else if ('tag' in spec.source) tag = spec.source.tag
  else {
    const src = spec.source
    const t = byName.get(pushName(name))
    const made = tryPushTag(d, src.host, src.path, spec.run)
    if (t) {
      push = line(t, { host: src.host, path: src.path })
      if (push.phase === 'Succeeded') tag = pushedTag(t)
      if (push.phase === 'Failed')
        blocked ??= `the push on ${src.host} failed: ${push.lastError ?? 'no reason given'}`
    } else {
      push = { host: src.host, path: src.path, phase: 'Pending', bytes: 0, seconds: 0, attempts: 0 }
      if ('error' in made) {
        blocked ??= `the source cannot be pushed: ${made.error}`
        push = { ...push, phase: 'Failed', lastError: made.error }
      } else if (blocked) push = { ...push, phase: 'Failed', lastError: blocked }
    }
  }

  const targets = spec.targets.map((target, i): TargetStatusT => {
    const where = { host: target.host, path: target.path, ...(target.name ? { name: target.name } : {}) }
    const t = byName.get(pullName(name, i))
    if (t && tag !== undefined && t.spec.tag === tag) return line(t, where)
    if (t && tag === undefined && blocked === undefined) {
      // A pull of an older tag while the push is redone: it waits for the new one.
      return {
        ...where,
        phase: 'Pending',
        bytes: 0,
        seconds: 0,
        attempts: t.status?.attempts ?? 0,
        task: t.metadata.name,
      }
    }
    if (t && taskPhase(t) === 'Failed') return line(t, where)
    const base = { ...where, bytes: 0, seconds: 0, attempts: t?.status?.attempts ?? 0 }
    return blocked ? { ...base, phase: 'Failed', lastError: blocked } : { ...base, phase: 'Pending' }
  })

  const counts = { total: targets.length, pending: 0, running: 0, succeeded: 0, failed: 0 }
  for (const l of targets) counts[key(l.phase)]++
  const all = push ? [push, ...targets] : targets
  const done = counts.succeeded + counts.failed === counts.total && push?.phase !== 'Running'
  const phase: TaskPhaseT =
    counts.succeeded === counts.total
      ? 'Succeeded'
      : done
        ? 'Failed'
        : all.some((l) => l.phase !== 'Pending')
          ? 'Running'
          : 'Pending'

  const failedLines = targets.filter((l) => l.phase === 'Failed')
  const failMessage =
    `${failedLines.length} of ${counts.total} targets failed: ` +
    failedLines
      .slice(0, MAX_NAMED_FAILURES)
      .map((l) => `${l.host}:${l.path} (${l.lastError ?? 'no reason given'})`)
      .join('; ') +
    (failedLines.length > MAX_NAMED_FAILURES ? `; and ${failedLines.length - MAX_NAMED_FAILURES} more` : '')
  const progress = `${counts.succeeded} of ${counts.total} targets succeeded, ${counts.failed} failed`
  const complete = condition(prev?.conditions, 'Complete', now, phase === 'Succeeded', {
    reason: phase === 'Succeeded' ? 'Succeeded' : phase === 'Failed' ? 'Failed' : phase,
    message: phase === 'Failed' ? failMessage : progress,
  })
  const failed = condition(prev?.conditions, 'Failed', now, phase === 'Failed', {
    reason: phase === 'Failed' ? (spec.cancelled ? 'Cancelled' : 'TargetsFailed') : phase,
    message: phase === 'Failed' ? failMessage : progress,
  })
  const terminal = phase === 'Succeeded' || phase === 'Failed'
  const wasTerminal = prev?.phase === 'Succeeded' || prev?.phase === 'Failed'
  return {
    observedGeneration: d.metadata.generation,
    observedRun: spec.run,
    phase,
    ...(tag !== undefined ? { tag } : {}),
    ...(push ? { push } : {}),
    targets,
    counts,
    conditions: [complete, failed],
    startedAt: prev?.startedAt ?? now.toISOString(),
    ...(terminal
      ? { finishedAt: wasTerminal && prev?.finishedAt ? prev.finishedAt : now.toISOString() }
      : {}),
  }
}

/** The transitions between two statuses (lines matched by position: the targets list is the spec's). */
export function transitions(
  d: Distribution,
  before: DistributionStatusT | undefined,
  after: DistributionStatusT,
): JobTransition[] {
  const base = { namespace: d.metadata.namespace, distribution: d.metadata.name }
  const out: JobTransition[] = []
  const one = (subject: 'push' | 'target', a: TargetStatusT | undefined, b: TargetStatusT | undefined) => {
    if (!b || a?.phase === b.phase) return
    out.push({
      ...base,
      subject,
      host: b.host,
      path: b.path,
      from: a?.phase,
      to: b.phase,
      ...(b.lastError ? { message: b.lastError } : {}),
    })
  }
  one('push', before?.push, after.push)
  for (const [i, t] of after.targets.entries()) one('target', before?.targets[i], t)
  if (before?.phase !== after.phase) {
    const c = after.conditions.find((x) => x.type === (after.phase === 'Failed' ? 'Failed' : 'Complete'))
    out.push({
      ...base,
      subject: 'job',
      from: before?.phase,
      to: after.phase,
      ...(c?.message ? { message: c.message } : {}),
    })
  }
  return out
}

function line(t: DistributionTask, where: { host: string; path: string; name?: string }): TargetStatusT {
  const s = t.status
  const phase = taskPhase(t)
  const current = phase === s?.phase
  return {
    ...where,
    phase,
    bytes: current ? (s?.bytes ?? 0) : 0,
    seconds: current ? (s?.seconds ?? 0) : 0,
    ...(current && s?.source ? { source: s.source } : {}),
    attempts: s?.attempts ?? 0,
    ...(current && s?.lastError && phase === 'Failed' ? { lastError: s.lastError } : {}),
    task: t.metadata.name,
    ...(current && s?.path && phase === 'Succeeded' && t.spec.action === 'pull' ? { written: s.path } : {}),
  }
}

function key(phase: TaskPhaseT): 'pending' | 'running' | 'succeeded' | 'failed' {
  return phase === 'Pending'
    ? 'pending'
    : phase === 'Running'
      ? 'running'
      : phase === 'Succeeded'
        ? 'succeeded'
        : 'failed'
}

function condition(
  prev: ConditionT[] | undefined,
  type: ConditionT['type'],
  now: Date,
  isTrue: boolean,
  what: { reason: string; message: string },
): ConditionT {
  const status = isTrue ? 'True' : 'False'
  const old = prev?.find((c) => c.type === type)
  const lastTransitionTime = old && old.status === status ? old.lastTransitionTime : now.toISOString()
  return { type, status, reason: what.reason, message: what.message.slice(0, 8000), lastTransitionTime }
}
