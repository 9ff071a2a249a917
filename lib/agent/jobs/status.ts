/**
 * Writing one task's status so that it lands: the latest status wanted is written with the
 * object's resourceVersion (PUT …/status); a 409 (someone else wrote meanwhile: the controller,
 * an earlier write of ours) re-reads and writes again, an apiserver that is down or busy is
 * retried with a growing pause, until it lands, the task is gone, or the worker stops. A newer
 * status set meanwhile replaces the one being retried (the result is never overtaken by an
 * older progress line), so a task's result survives an apiserver restart.
 */
import type { ResourceClient } from '../../apiserver/client/index.js'
import { toShoalError } from '../../errors/index.js'
import type { TaskSpecT, TaskStatusT } from '../../jobs/kinds.js'
import type { Logger } from '../../log/index.js'

/** Errors that mean "the apiserver could not take it now": wait and try again. */
const TRANSIENT = new Set([
  'UNAVAILABLE',
  'TIMEOUT',
  'TOO_MANY_REQUESTS',
  'UPSTREAM_ERROR',
  'INTERNAL',
  'IO_ERROR',
])
const FIRST_PAUSE_MS = 250
const MAX_PAUSE_MS = 15_000

export interface TaskRef {
  namespace: string
  name: string
  uid: string
}

export class StatusSink {
  private wanted: TaskStatusT | undefined
  private loop: Promise<void> | undefined

  constructor(
    private readonly client: ResourceClient<TaskSpecT, TaskStatusT>,
    readonly task: TaskRef,
    private readonly log: Logger,
    /** The worker's life: once aborted, nothing more is tried. */
    private readonly stopped: AbortSignal,
  ) {}

  /** Writes `status` (replacing any not yet written); returns at once. */
  set(status: TaskStatusT): void {
    this.wanted = status
    this.kick()
  }

  /** Resolves once everything set so far is written (or given up: task gone, worker stopping). */
  async flushed(): Promise<void> {
    while (this.loop) await this.loop
  }

  private kick(): void {
    if (this.loop) return
    this.loop = this.drain().finally(() => {
      this.loop = undefined
      // Set while the loop was finishing: write it too.
      if (this.wanted && !this.stopped.aborted) this.kick()
    })
  }

  private async drain(): Promise<void> {
    let pause = FIRST_PAUSE_MS
    while (this.wanted && !this.stopped.aborted) {
      const want = this.wanted
      const outcome = await this.writeOnce(want)
      if (outcome === 'written' || outcome === 'gone') {
        if (this.wanted === want) this.wanted = undefined
        pause = FIRST_PAUSE_MS
        continue
      }
      if (outcome === 'conflict') continue
      await sleep(pause, this.stopped)
      pause = Math.min(pause * 2, MAX_PAUSE_MS)
    }
    if (this.wanted && this.stopped.aborted)
      this.log.warn(
        { task: `${this.task.namespace}/${this.task.name}`, phase: this.wanted.phase },
        'agent stopping: task status not written (the task runs again at the next start)',
      )
  }

  private async writeOnce(status: TaskStatusT): Promise<'written' | 'gone' | 'conflict' | 'retry'> {
    const { namespace, name, uid } = this.task
    try {
      const current = await this.client.get(namespace, name)
      // A task deleted and created again under the same name is another task.
      if (current.metadata.uid !== uid) return 'gone'
      await this.client.updateStatus(namespace, {
        metadata: { name, resourceVersion: current.metadata.resourceVersion },
        spec: current.spec,
        status,
      })
      return 'written'
    } catch (err) {
      const e = toShoalError(err)
      if (e.code === 'NOT_FOUND') {
        this.log.info({ task: `${namespace}/${name}` }, 'task deleted: its status is not written')
        return 'gone'
      }
      if (e.code === 'CONFLICT') return 'conflict'
      if (TRANSIENT.has(e.code)) {
        this.log.debug(
          { task: `${namespace}/${name}`, err: e },
          'task status not written yet: apiserver unavailable',
        )
        return 'retry'
      }
      // Refused for good (401/403: a wrong token; 422: a status the kind refuses): say so loudly,
      // keep trying slowly (an operator may fix the token) rather than drop a result silently.
      this.log.error({ task: `${namespace}/${name}`, err: e }, 'the apiserver refused the task status')
      return 'retry'
    }
  }
}

/** setTimeout as a promise that ends early (resolving) when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
