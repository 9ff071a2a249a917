/**
 * The job controller (docs/jobs.md): turns Distributions into DistributionTasks and the tasks'
 * statuses back into each Distribution's summary. It speaks to the resource API as any client
 * does (ResourceClient over HTTP), so it can run in the herd or on its own.
 *
 * Informer style: at start it lists both kinds (all namespaces) into a cache, then keeps one
 * watch per kind from the list's resourceVersion (the client resumes after drops and lists again
 * after a 410). Every change queues the Distribution it concerns; one worker reconciles queued
 * Distributions one at a time: plan (reconcile.ts), write, update the cache from the answers,
 * plan again until nothing is left, then write the summary (summary.ts) if it changed. Writes
 * to a task's status are conditional on the resourceVersion read, so an agent's report that
 * lands in between wins and the step is simply planned again. A timer per Distribution wakes it
 * at its earliest task deadline.
 */
import { ResourceClient } from '../apiserver/client/index.js'
import { isShoalError, toShoalError } from '../errors/index.js'
import { Lifecycle, type Service } from '../lifecycle/index.js'
import type { Logger } from '../log/index.js'
import { ResourceCache } from './cache.js'
import {
  type Distribution,
  DistributionKind,
  type DistributionSpecT,
  type DistributionStatusT,
  type DistributionTask,
  DistributionTaskKind,
  type TaskSpecT,
  type TaskStatusT,
} from './kinds.js'
import { type Action, CANCELLED_ERROR, planTasks } from './reconcile.js'
import { type JobTransition, summarise, transitions } from './summary.js'
import { stable } from './tasks.js'

export interface JobControllerOptions {
  /** The resource API, e.g. http://127.0.0.1:15006. */
  url: string
  token?: string
  logger: Logger
  /** Called on every target, push and job phase change: the seam for the event log. */
  onTransition?: (t: JobTransition) => void
  now?: () => Date
  /** Writes in flight at once within one Distribution. */
  concurrency?: number
  /** Pause before a reconcile that failed is tried again (ms). */
  retryMs?: number
  /** A Distribution's summary is written at most this often while its phase stays (ms). */
  statusIntervalMs?: number
  /** A task change is acted on this long after it arrives, with the others of that window (ms). */
  batchMs?: number
}

const MAX_PASSES = 8

export class JobController implements Service {
  private readonly dists: ResourceClient<DistributionSpecT, DistributionStatusT>
  private readonly tasks: ResourceClient<TaskSpecT, TaskStatusT>
  private readonly cache = new ResourceCache()
  private readonly queue = new Set<string>()
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; at: number }>()
  private readonly lastStatusWrite = new Map<string, number>()
  private readonly life: Lifecycle
  private readonly now: () => Date
  private abort: AbortController | undefined
  private wake: (() => void) | undefined
  private loops: Promise<unknown>[] = []
  /** Reconciles done (for tests and logs). */
  reconciles = 0

  constructor(private readonly opts: JobControllerOptions) {
    const client = { token: opts.token, timeoutMs: 30_000 }
    this.dists = new ResourceClient(opts.url, DistributionKind, client)
    this.tasks = new ResourceClient(opts.url, DistributionTaskKind, client)
    this.now = opts.now ?? (() => new Date())
    this.life = new Lifecycle('job controller', {
      start: () => this.begin(),
      stop: () => this.end(),
    })
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal)
  }
  stop(): Promise<void> {
    return this.life.stop()
  }

  /** Resolves when nothing is queued or being reconciled (tests). */
  async idle(): Promise<void> {
    while (this.queue.size > 0 || this.busy) await new Promise((r) => setTimeout(r, 10))
  }

  private busy = false

  private async begin(): Promise<void> {
    this.abort = new AbortController()
    const signal = this.abort.signal
    // The tasks first: a Distribution reconciled before its tasks are known would re-create them.
    const taskList = await this.tasks.list()
    const distList = await this.dists.list()
    for (const t of taskList.items) this.cache.putTask(t)
    for (const d of distList.items) this.cache.putDistribution(d)
    for (const key of this.cache.distributionKeys()) this.queue.add(key)
    this.loops = [
      this.watchLoop('tasks', signal, async () => {
        for await (const ev of this.tasks.watch({
          resourceVersion: taskList.metadata.resourceVersion,
          signal,
        })) {
          if (ev.type === 'BOOKMARK') continue
          const key = ev.type === 'DELETED' ? this.cache.deleteTask(ev.object) : this.cache.putTask(ev.object)
          // Many agents report at once: their reports are taken together, batchMs after the first.
          if (key) this.later(key, this.opts.batchMs ?? 50)
        }
      }),
      this.watchLoop('distributions', signal, async () => {
        for await (const ev of this.dists.watch({
          resourceVersion: distList.metadata.resourceVersion,
          signal,
        })) {
          if (ev.type === 'BOOKMARK') continue
          const key =
            ev.type === 'DELETED'
              ? this.cache.deleteDistribution(ev.object)
              : this.cache.putDistribution(ev.object)
          this.enqueue(key)
        }
      }),
      this.worker(signal),
    ]
    this.opts.logger.info(
      { distributions: distList.items.length, tasks: taskList.items.length },
      'job controller started',
    )
  }

  private async end(): Promise<void> {
    this.abort?.abort()
    this.wake?.()
    for (const t of this.timers.values()) clearTimeout(t.timer)
    this.timers.clear()
    await Promise.allSettled(this.loops)
    this.loops = []
  }

  /** A watch that failed for good (not a drop: the client resumes those) is started again. */
  private async watchLoop(what: string, signal: AbortSignal, run: () => Promise<void>): Promise<void> {
    while (!signal.aborted) {
      try {
        await run()
      } catch (err) {
        if (signal.aborted) return
        this.opts.logger.warn({ err: toShoalError(err), what }, 'job controller watch failed; watching again')
        await pause(this.opts.retryMs ?? 1000, signal)
      }
    }
  }

  private enqueue(key: string): void {
    this.queue.add(key)
    this.wake?.()
  }

  private async worker(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const key = this.queue.values().next().value
      if (key === undefined) {
        await new Promise<void>((r) => {
          this.wake = r
        })
        this.wake = undefined
        continue
      }
      this.queue.delete(key)
      this.busy = true
      try {
        await this.reconcile(key)
      } catch (err) {
        if (signal.aborted) break
        const e = toShoalError(err)
        if (
          !isShoalError(e, 'CONFLICT') &&
          !isShoalError(e, 'NOT_FOUND') &&
          !isShoalError(e, 'ALREADY_EXISTS')
        )
          this.opts.logger.warn({ err: e, distribution: key }, 'job reconcile failed; retrying')
        this.later(key, this.opts.retryMs ?? 1000)
      } finally {
        this.busy = false
      }
    }
  }

  /** Wake `key` in `ms` (one timer per Distribution: the earliest wins). */
  /** Wake `key` in `ms`, unless a wake-up is due sooner already (one timer per Distribution). */
  private later(key: string, ms: number): void {
    // A reconcile still in flight when stop() cleared the timers must not leave a new one.
    if (!this.abort || this.abort.signal.aborted) return
    const delay = Math.max(0, Math.min(ms, 2 ** 31 - 1))
    const at = Date.now() + delay
    const old = this.timers.get(key)
    if (old && old.at <= at) return
    if (old) clearTimeout(old.timer)
    const timer = setTimeout(() => {
      this.timers.delete(key)
      this.enqueue(key)
    }, delay)
    timer.unref() // deadlines never keep a process alive on their own
    this.timers.set(key, { timer, at })
  }

  private async reconcile(key: string): Promise<void> {
    this.reconciles++
    for (let pass = 0; pass < MAX_PASSES; pass++) {
      const d = this.cache.distribution(key)
      const tasks = this.cache.tasksOf(key)
      const plan = planTasks(d, tasks, this.now())
      if (plan.actions.length > 0) {
        await this.execute(plan.actions)
        continue
      }
      if (!d) {
        this.lastStatusWrite.delete(key)
        return
      }
      if (plan.nextDeadline !== undefined) this.later(key, plan.nextDeadline - this.now().getTime() + 5)
      const status = summarise(d, tasks, this.now())
      if (stable(status) === stable(d.status)) return
      // Reports of many targets arrive together: their summary (one object of up to the whole
      // target list) is written at most every statusIntervalMs, except when the job's phase changes.
      const wait = (this.opts.statusIntervalMs ?? 250) - (Date.now() - (this.lastStatusWrite.get(key) ?? 0))
      if (wait > 0 && status.phase === d.status?.phase) {
        this.later(key, wait)
        return
      }
      const written = await this.dists.updateStatus(d.metadata.namespace, {
        metadata: { name: d.metadata.name, uid: d.metadata.uid },
        spec: d.spec,
        status,
      })
      this.lastStatusWrite.set(key, Date.now())
      this.cache.putDistribution(written)
      for (const t of transitions(d, d.status, status)) this.transition(t)
      return
    }
    this.later(key, 100)
  }

  private transition(t: JobTransition): void {
    this.opts.logger.info(t, 'job transition')
    try {
      this.opts.onTransition?.(t)
    } catch (err) {
      this.opts.logger.warn({ err: toShoalError(err) }, 'job transition callback failed')
    }
  }

  private async execute(actions: Action[]): Promise<void> {
    const limit = this.opts.concurrency ?? 8
    let next = 0
    let firstError: unknown
    const one = async () => {
      while (next < actions.length) {
        const a = actions[next++] as Action
        try {
          await this.apply(a)
        } catch (err) {
          // Another writer got there first, or the object is gone: the cache catches up from the
          // watch and the next pass plans again. Anything else ends this reconcile.
          const e = toShoalError(err)
          if (e.code === 'CONFLICT' || e.code === 'NOT_FOUND' || e.code === 'ALREADY_EXISTS') {
            await this.refresh(a).catch(() => undefined)
            continue
          }
          firstError ??= e
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(limit, actions.length) }, one))
    if (firstError) throw firstError
  }

  /** After a lost race: read the task as it is now. */
  private async refresh(a: Action): Promise<void> {
    const { name } = a.task.metadata
    const ns = a.task.metadata.namespace as string
    try {
      this.cache.putTask(await this.tasks.get(ns, name))
    } catch (err) {
      if (isShoalError(err, 'NOT_FOUND') && a.type !== 'create') this.cache.deleteTask(a.task)
      else throw err
    }
  }

  private async apply(a: Action): Promise<void> {
    switch (a.type) {
      case 'create': {
        const ns = a.task.metadata.namespace as string
        this.cache.putTask(await this.tasks.create(ns, a.task))
        return
      }
      case 'delete': {
        const t = a.task
        await this.tasks.delete(t.metadata.namespace, t.metadata.name, { uid: t.metadata.uid })
        this.cache.deleteTask(t)
        return
      }
      case 'respec': {
        const t = a.task
        const updated = await this.tasks.update(t.metadata.namespace, {
          metadata: { ...t.metadata, annotations: a.annotations },
          spec: a.spec,
        })
        this.cache.putTask(updated)
        const reset: TaskStatusT = {
          phase: 'Pending',
          observedGeneration: t.status?.observedGeneration ?? 0,
          attempts: t.status?.attempts ?? 0,
          bytes: 0,
          seconds: 0,
        }
        await this.writeStatus(updated, reset)
        return
      }
      case 'cancel': {
        const t = a.task
        const updated = await this.tasks.update(t.metadata.namespace, {
          metadata: t.metadata,
          spec: { ...t.spec, cancelled: true },
        })
        this.cache.putTask(updated)
        await this.writeStatus(updated, failed(updated, CANCELLED_ERROR, this.now()))
        return
      }
      case 'fail':
        await this.writeStatus(a.task, failed(a.task, a.lastError, this.now()))
        return
    }
  }

  /** A status write conditional on the task's resourceVersion (an agent's newer report wins). */
  private async writeStatus(t: DistributionTask, status: TaskStatusT): Promise<void> {
    const written = await this.tasks.updateStatus(t.metadata.namespace, {
      metadata: { name: t.metadata.name, resourceVersion: t.metadata.resourceVersion },
      spec: t.spec,
      status,
    })
    this.cache.putTask(written)
  }

  /** The Distributions in the cache (tests). */
  get known(): Distribution[] {
    return this.cache
      .distributionKeys()
      .map((k) => this.cache.distribution(k))
      .filter((d): d is Distribution => d !== undefined)
  }
}

function failed(t: DistributionTask, lastError: string, now: Date): TaskStatusT {
  return {
    bytes: 0,
    seconds: 0,
    attempts: 0,
    ...t.status,
    phase: 'Failed',
    observedGeneration: t.metadata.generation,
    lastError,
    finishedAt: now.toISOString(),
  }
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer)
        resolve()
      },
      { once: true },
    )
  })
}
