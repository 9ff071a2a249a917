/**
 * One step of the job controller, as a pure function: from a Distribution and the tasks that
 * exist, the writes that bring the tasks closer to what the Distribution asks (create, re-run,
 * cancel, fail by deadline, delete). The controller executes them, updates its cache and calls
 * this again until nothing is left to do; then it writes the summary (summary.ts). Being a
 * function of the stored state only (deadlines and runs are annotations on the tasks), it
 * converges to the same place after a herd restart, whatever was done before it.
 */
import type { ResourceInput } from '../apiserver/types.js'
import { apiVersionOf } from '../apiserver/types.js'
import {
  ANNOTATION_DEADLINE,
  ANNOTATION_RUN,
  type Distribution,
  DistributionKind,
  type DistributionTask,
  LABEL_DISTRIBUTION,
  type TaskSpecT,
  type TaskStatusT,
} from './kinds.js'
import {
  deadlineFrom,
  isFinished,
  pushedTag,
  sameWork,
  taskDeadline,
  taskPhase,
  taskRun,
  tryPushTag,
} from './tasks.js'

export type Action =
  | { type: 'create'; task: ResourceInput<TaskSpecT, TaskStatusT> }
  /** New spec (attempt bumped), new deadline and run, then the status reset to Pending. */
  | { type: 'respec'; task: DistributionTask; spec: TaskSpecT; annotations: Record<string, string> }
  /** The status set to Failed with this error (deadline passed), unless the agent wrote meanwhile. */
  | { type: 'fail'; task: DistributionTask; lastError: string }
  /** spec.cancelled set, then the status Failed "cancelled". */
  | { type: 'cancel'; task: DistributionTask }
  | { type: 'delete'; task: DistributionTask }

export const pushName = (dist: string) => `${dist}-push`
export const pullName = (dist: string, index: number) => `${dist}-t${index}`

/** The longest Distribution name: its task names (`-t9999`) must stay valid names. */
export const MAX_DISTRIBUTION_NAME = 240

export const CANCELLED_ERROR = 'ABORTED: cancelled by the operator (shoal job cancel)'

export function deadlineError(t: DistributionTask): string {
  const s = t.spec.options.timeoutSeconds
  const what = t.spec.action === 'push' ? 'push' : 'pull'
  return taskPhase(t) === 'Pending'
    ? `TIMEOUT: host ${t.spec.host} did not start the ${what} within ${s} s: is its agent running with jobs enabled?`
    : `TIMEOUT: host ${t.spec.host} did not finish the ${what} within ${s} s (options.timeoutSeconds)`
}

export interface Plan {
  actions: Action[]
  /** The earliest deadline of an unfinished task (ms since the epoch): look again then. */
  nextDeadline?: number
}

/** The writes for the tasks of `d` (undefined: the Distribution is gone; its tasks go too). */
export function planTasks(d: Distribution | undefined, tasks: DistributionTask[], now: Date): Plan {
  if (!d || d.metadata.deletionTimestamp) return { actions: tasks.map((task) => ({ type: 'delete', task })) }
  const actions: Action[] = []
  const mine = new Map<string, DistributionTask>()
  for (const t of tasks) {
    const owner = t.metadata.ownerReferences?.find((r) => r.controller)
    // A task of an earlier Distribution of the same name (deleted and created again) goes.
    if (owner?.uid === d.metadata.uid) mine.set(t.metadata.name, t)
    else actions.push({ type: 'delete', task: t })
  }
  if (d.metadata.name.length > MAX_DISTRIBUTION_NAME) return { actions }

  const { spec } = d
  const name = d.metadata.name
  const rerunning = (d.status?.observedRun ?? 0) < spec.run
  const rerun = (t: DistributionTask) =>
    rerunning && taskRun(t) < spec.run && (spec.rerun === 'all' || taskPhase(t) === 'Failed')
  let nextDeadline: number | undefined
  const wanted = new Set<string>()

  const base = (
    t: DistributionTask | undefined,
    task: Omit<TaskSpecT, 'attempt' | 'cancelled' | 'distribution'>,
  ) =>
    ({
      distribution: name,
      ...task,
      attempt: t?.spec.attempt ?? 1,
      cancelled: t?.spec.cancelled ?? false,
    }) as TaskSpecT
  const fresh = (over: Record<string, string> = {}) => {
    const deadline = deadlineFrom(now, spec.options.timeoutSeconds)
    return {
      [ANNOTATION_RUN]: String(spec.run),
      ...(deadline ? { [ANNOTATION_DEADLINE]: deadline } : {}),
      ...over,
    }
  }

  /** Create, re-run, cancel or fail one task towards `want` (undefined: not creatable yet). */
  const converge = (
    taskName: string,
    want: TaskSpecT | undefined,
    workChanged: (t: DistributionTask) => boolean,
  ) => {
    wanted.add(taskName)
    const t = mine.get(taskName)
    if (!t) {
      if (want && !spec.cancelled) actions.push({ type: 'create', task: newTask(d, taskName, want, fresh()) })
      return
    }
    const phase = taskPhase(t)
    if (spec.cancelled) {
      if (!isFinished(phase) && !t.spec.cancelled) actions.push({ type: 'cancel', task: t })
      return
    }
    if (want && (workChanged(t) || rerun(t))) {
      const next = { ...want, attempt: t.spec.attempt + 1, cancelled: false }
      actions.push({
        type: 'respec',
        task: t,
        spec: next,
        annotations: { ...t.metadata.annotations, ...fresh() },
      })
      return
    }
    if (isFinished(phase)) return
    const at = taskDeadline(t)
    if (at === undefined) return
    if (now.getTime() >= at) actions.push({ type: 'fail', task: t, lastError: deadlineError(t) })
    else nextDeadline = Math.min(nextDeadline ?? at, at)
  }

  // The tag the targets pull: the source's, or the one the push made once it succeeded.
  let tag: string | undefined
  if ('tag' in spec.source) tag = spec.source.tag
  else {
    const src = spec.source
    const push = mine.get(pushName(name))
    // A push keeps its tag until it is re-run or its source moves: the version names the run
    // it was made at (versions are immutable, and the file may have changed since).
    const keep = push !== undefined && !rerun(push) && sameSource(push, src)
    const made = keep ? { tag: push.spec.tag } : tryPushTag(d, src.host, src.path, spec.run)
    if ('tag' in made) {
      const want = base(push, {
        host: src.host,
        action: 'push',
        sourcePath: src.path,
        tag: made.tag,
        options: spec.options,
      })
      converge(pushName(name), want, (p) => !sameWork(p.spec, want))
    }
    if (keep && taskPhase(push) === 'Succeeded') tag = pushedTag(push)
  }

  spec.targets.forEach((target, i) => {
    const taskName = pullName(name, i)
    const t = mine.get(taskName)
    const want = tag
      ? base(t, {
          host: target.host,
          action: 'pull',
          tag,
          path: target.path,
          ...(target.name !== undefined ? { name: target.name } : {}),
          options: spec.options,
        })
      : undefined
    // Until the push made its tag, a pull of an older tag is left alone (not re-run, not failed).
    if (!want && t && !spec.cancelled) {
      wanted.add(taskName)
      return
    }
    converge(taskName, want, (p) => want !== undefined && !sameWork(p.spec, want))
  })

  for (const [taskName, t] of mine) if (!wanted.has(taskName)) actions.push({ type: 'delete', task: t })
  return { actions, nextDeadline }
}

function sameSource(push: DistributionTask, src: { host: string; path: string }): boolean {
  return push.spec.host === src.host && push.spec.sourcePath === src.path
}

function newTask(
  d: Distribution,
  name: string,
  spec: TaskSpecT,
  annotations: Record<string, string>,
): ResourceInput<TaskSpecT, TaskStatusT> {
  const label: Record<string, string> =
    d.metadata.name.length <= 63 ? { [LABEL_DISTRIBUTION]: d.metadata.name } : {}
  return {
    metadata: {
      name,
      namespace: d.metadata.namespace,
      labels: label,
      annotations,
      ownerReferences: [
        {
          apiVersion: apiVersionOf(DistributionKind),
          kind: DistributionKind.kind,
          name: d.metadata.name,
          uid: d.metadata.uid,
          controller: true,
        },
      ],
    },
    spec,
  }
}
