/**
 * What a task's run comes to: whether a task is final for its spec, when a run is cut off, the
 * error it ends with when it was cut short, and the final status written.
 */
import { ShoalError } from '../../errors/index.js'
import {
  ANNOTATION_DEADLINE,
  type DistributionTask,
  type TaskSpecT,
  type TaskStatusT,
} from '../../jobs/kinds.js'
import type { TaskOutcome } from './execute.js'

/** Why a run was aborted from outside; decides what its end writes. */
export type AbortReason = 'cancelled' | 'superseded' | 'deleted' | 'stopping' | 'deadline'

/** Succeeded or Failed for the task's current generation (whoever wrote it): not run again. */
export function isFinal(task: DistributionTask): boolean {
  const st = task.status
  return (
    st !== undefined &&
    (st.phase === 'Succeeded' || st.phase === 'Failed') &&
    st.observedGeneration >= task.metadata.generation
  )
}

/** What every status of one run carries. */
export interface RunBase {
  observedGeneration: number
  attempts: number
  startedAt: string
}

export function succeeded(base: RunBase, observed: number, o: TaskOutcome, seconds: number): TaskStatusT {
  return {
    phase: 'Succeeded',
    ...base,
    observedGeneration: observed,
    bytes: o.bytes,
    seconds,
    ...(o.source ? { source: o.source } : {}),
    digest: o.digest,
    path: o.path,
    finishedAt: new Date().toISOString(),
  }
}

export function failed(
  base: RunBase,
  observed: number,
  err: ShoalError,
  bytes: number,
  seconds: number,
): TaskStatusT {
  return {
    phase: 'Failed',
    ...base,
    observedGeneration: observed,
    bytes,
    seconds,
    finishedAt: new Date().toISOString(),
    lastError: `${err.code}: ${err.message}`.slice(0, 4096),
  }
}

/**
 * When a run is cut off: the task's deadline as the controller set it (annotation
 * shoal.io/deadline, from its (re)creation), else options.timeoutSeconds from the run's start;
 * undefined for timeoutSeconds 0. The controller fails a task past it anyway: a transfer that
 * goes on would only write into a job that has moved on.
 */
export function taskDeadline(task: DistributionTask, started: number): number | undefined {
  const seconds = task.spec.options.timeoutSeconds
  if (seconds === 0) return undefined
  const at = Date.parse(task.metadata.annotations?.[ANNOTATION_DEADLINE] ?? '')
  return Number.isFinite(at) ? at : started + seconds * 1000
}

/** The error a run ends with, in the words of why it was cut short. */
export function failureOf(err: ShoalError, reason: AbortReason | undefined, spec: TaskSpecT): ShoalError {
  if (reason === 'cancelled')
    return new ShoalError('ABORTED', 'cancelled while running; nothing was left half-written', { cause: err })
  if (reason === 'deadline')
    return new ShoalError(
      'TIMEOUT',
      `the task did not finish by its deadline (options.timeoutSeconds ${spec.options.timeoutSeconds} s); nothing was left half-written`,
      { cause: err },
    )
  return err
}

/** A run this process finished: the task's uid, the generation and attempt it is final for. */
export interface DoneRun {
  uid: string
  generation: number
  attempt: number
  /** The Succeeded status it wrote (a cancel arriving later does not undo a placed file). */
  status?: TaskStatusT
}

/**
 * The status to write when a cancel arrives after this process's run of the same work (same
 * uid, same attempt) succeeded: Succeeded again, for the cancel's generation. Undefined when
 * the cancel is not about a success of ours.
 */
export function succeededBeforeCancel(
  done: DoneRun | undefined,
  task: DistributionTask,
): TaskStatusT | undefined {
  if (!task.spec.cancelled || done?.uid !== task.metadata.uid || done.attempt !== task.spec.attempt) return
  if (done.status?.phase !== 'Succeeded') return
  return { ...done.status, observedGeneration: task.metadata.generation }
}

/** A cancelled task that never ran here: Failed, keeping what an earlier run reported. */
export function cancelledBeforeRun(st: TaskStatusT | undefined, generation: number): TaskStatusT {
  return {
    phase: 'Failed',
    observedGeneration: generation,
    attempts: st?.attempts ?? 0,
    bytes: st?.bytes ?? 0,
    seconds: st?.seconds ?? 0,
    ...(st?.startedAt ? { startedAt: st.startedAt } : {}),
    finishedAt: new Date().toISOString(),
    lastError: 'ABORTED: the task was cancelled before it ran',
  }
}

/** What every log line about a task carries. */
export function taskFields(obj: DistributionTask) {
  const s = obj.spec
  return {
    task: `${obj.metadata.namespace}/${obj.metadata.name}`,
    distribution: s.distribution,
    action: s.action,
    tag: s.tag,
    path: s.action === 'pull' ? s.path : s.sourcePath,
    generation: obj.metadata.generation,
    attempt: s.attempt,
  }
}
