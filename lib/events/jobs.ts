/**
 * What the job controller (and an agent's task worker) calls on every transition of a
 * Distribution or one of its tasks: one event, `job.<phase>` or `task.<phase>`, selectable by
 * `shoal events --job <name>`.
 */
import type { EventRecorder } from './recorder.js'

export interface JobTransition {
  /** The Distribution's name (every event of the job carries it in spec.job). */
  job: string
  /** The new phase: Pending, Running, Succeeded, Failed, Cancelled... (lower-cased into the action). */
  phase: string
  /** Set for a task's transition: the DistributionTask's name, its host and action. */
  task?: { name: string; host: string; action: 'push' | 'pull'; attempt?: number }
  /** The previous phase, when known. */
  from?: string
  /** A failure (ShoalError or its `CODE: message` text); makes the outcome 'failed'. */
  error?: unknown
  /** Default: 'job-controller' (the controller) or the task's host (an agent). */
  actor?: string
  /** Small extras: bytes, seconds, source (swarm/csgw/local), path, tag... */
  details?: Record<string, unknown>
  tag?: string
}

export function recordJobTransition(recorder: EventRecorder, t: JobTransition): void {
  const phase =
    t.phase
      .toLowerCase()
      .replace(/[^a-z0-9_-]/g, '-')
      .slice(0, 32) || 'unknown'
  const failed = t.error !== undefined || phase === 'failed'
  recorder.record({
    action: `${t.task ? 'task' : 'job'}.${/^[a-z]/.test(phase) ? phase : `p${phase}`}`,
    subject: t.task ? t.task.name : t.job,
    outcome: failed ? 'failed' : 'ok',
    error: t.error,
    actor: t.actor ?? (t.task ? t.task.host : 'job-controller'),
    job: t.job,
    tag: t.tag,
    details: {
      ...(t.from ? { from: t.from } : {}),
      ...(t.task ? { host: t.task.host, taskAction: t.task.action, attempt: t.task.attempt } : {}),
      ...t.details,
    },
  })
}
