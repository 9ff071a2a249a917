/**
 * The job controller's transitions as event-log entries (lib/events, docs/events.md): one
 * `job.<phase>` per job phase change, one `task.<phase>` per push or target phase change, each
 * carrying the job's name so `shoal events --job NAME` shows a job's whole story.
 */
import type { JobTransition as EventTransition } from '../events/index.js'
import type { JobTransition } from './summary.js'

export function jobEvent(t: JobTransition): EventTransition {
  const failed = t.to === 'Failed'
  return {
    job: t.distribution,
    phase: t.to,
    ...(t.from ? { from: t.from } : {}),
    ...(t.subject === 'job'
      ? {}
      : {
          task: {
            name: t.subject === 'push' ? `${t.distribution}-push` : `${t.distribution}@${t.host ?? '?'}`,
            host: t.host ?? 'unknown',
            action: t.subject === 'push' ? ('push' as const) : ('pull' as const),
          },
          // The controller observed the change; the host is named in details.
          actor: 'job-controller',
        }),
    ...(failed && t.message ? { error: t.message } : {}),
    details: {
      namespace: t.namespace,
      ...(t.path ? { path: t.path } : {}),
      ...(!failed && t.message ? { message: t.message.slice(0, 500) } : {}),
    },
  }
}
