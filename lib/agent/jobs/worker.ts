/**
 * The agent's task worker: one long-lived watch of the DistributionTasks of this host
 * (fieldSelector `spec.host=<hostName>`, resumed from its resourceVersion by the client, relisted
 * after a 410), and at most `jobs.concurrency` of them running at once.
 *
 * When a task runs: its `metadata.generation` is newer than the `status.observedGeneration` it
 * carries, or its status is not final (none yet, or Running: a run this process does not know,
 * i.e. one cut short by an agent restart, runs again). It is not run when cancelled; a cancelled
 * task that is not final gets Failed "cancelled". A spec change while it runs (a cancel, a
 * rerun, the task re-created) aborts the run: a cancel ends it Failed, anything else runs the
 * new spec. Aborting a pull leaves nothing half-written (PullCLI removes its temp files).
 *
 * Status: Running (startedAt, attempts) at once, bytes at most every `jobs.progressSeconds`,
 * then Succeeded or Failed with bytes, seconds, source, digest, path and lastError
 * (`CODE: message`), each written by a StatusSink that retries through 409s and outages.
 */
import { readFile } from 'node:fs/promises'
import { ResourceClient } from '../../apiserver/client/index.js'
import type { WatchEvent } from '../../apiserver/types.js'
import { ShoalError, toShoalError } from '../../errors/index.js'
import {
  type DistributionTask,
  DistributionTaskKind,
  type TaskSpecT,
  type TaskStatusT,
} from '../../jobs/kinds.js'
import { Lifecycle, type Service } from '../../lifecycle/index.js'
import type { Logger } from '../../log/index.js'
import { type Counter, counter, liveGauge, type Registry } from '../../metrics/index.js'
import type { JobsConfigT } from './config.js'
import { executeTask, type TaskOutcome } from './execute.js'
import {
  type AbortReason,
  cancelledBeforeRun,
  type DoneRun,
  failed,
  failureOf,
  isFinal,
  succeeded,
  succeededBeforeCancel,
  taskDeadline,
  taskFields,
} from './outcome.js'
import { realRoots } from './roots.js'
import { StatusSink, sleep } from './status.js'

export interface TaskWorkerOptions {
  hostName: string
  jobs: JobsConfigT & { apiserver: string }
  /** This agent's local API, once it listens (pulls go through it, as PullCLI's do). */
  agentUrl: () => string
  logger: Logger
  registry?: Registry
}

interface Run {
  uid: string
  generation: number
  abort: AbortController
  reason?: AbortReason
}

interface Entry {
  latest: DistributionTask
  run?: Run
  queued: boolean
  /** The generation (of this uid) this process last finished: not run again for it. */
  done?: DoneRun
  sink?: StatusSink
}

const key = (o: { metadata: { namespace: string; name: string } }) =>
  `${o.metadata.namespace}/${o.metadata.name}`

export class TaskWorker implements Service {
  private readonly log: Logger
  private readonly entries = new Map<string, Entry>()
  private readonly queue: string[] = []
  private running = 0
  private readonly runs = new Set<Promise<void>>()
  private readonly stopping = new AbortController()
  private client: ResourceClient<TaskSpecT, TaskStatusT> | undefined
  private roots: string[] = []
  private watching: Promise<void> | undefined
  private readonly finished: Counter | undefined
  private readonly life = new Lifecycle('job task worker', {
    start: () => this.doStart(),
    stop: () => this.doStop(),
  })

  constructor(private readonly o: TaskWorkerOptions) {
    this.log = o.logger.child({ component: 'jobs', host: o.hostName })
    if (o.registry) {
      this.finished = counter(
        o.registry,
        'shoal_agent_job_tasks_total',
        'Distribution tasks this agent finished, by action and outcome (succeeded, failed, cancelled)',
        ['action', 'outcome'],
      )
      liveGauge(
        o.registry,
        'shoal_agent_job_tasks_running',
        'Distribution tasks running now',
        () => this.running,
      )
    }
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal)
  }

  stop(): Promise<void> {
    return this.life.stop()
  }

  /** Tasks running now (tests, metrics). */
  get active(): number {
    return this.running
  }

  private async doStart(): Promise<void> {
    const { jobs } = this.o
    let token: string | undefined
    if (jobs.tokenFile !== undefined) {
      token = (
        await readFile(jobs.tokenFile, 'utf8').catch((err) => {
          throw new ShoalError(
            'CONFIG_INVALID',
            `jobs.tokenFile ${jobs.tokenFile} cannot be read: ${err.code ?? err}`,
            {
              cause: err,
            },
          )
        })
      ).trim()
      if (token === '') throw new ShoalError('CONFIG_INVALID', `jobs.tokenFile ${jobs.tokenFile} is empty`)
    }
    this.roots = await realRoots(jobs.roots)
    if (this.roots.length === 0)
      this.log.warn(
        'jobs.roots is empty: every distribution task of this host will fail until it names folders',
      )
    const base = /^https?:\/\//.test(jobs.apiserver) ? jobs.apiserver : `http://${jobs.apiserver}`
    this.client = new ResourceClient(base, DistributionTaskKind, {
      ...(token ? { token } : {}),
      timeoutMs: 30_000,
    })
    // Not awaited: the agent serves pulls whether or not the apiserver is up.
    this.watching = this.watchLoop(this.client)
    this.log.info(
      { apiserver: base, roots: this.roots, concurrency: jobs.concurrency },
      'job task worker started',
    )
  }

  private async doStop(): Promise<void> {
    this.stopping.abort()
    for (const e of this.entries.values()) this.abortRun(e, 'stopping')
    await this.watching
    await Promise.allSettled([...this.runs])
    await Promise.allSettled([...this.entries.values()].map((e) => e.sink?.flushed()))
    this.log.info('job task worker stopped')
  }

  private async watchLoop(client: ResourceClient<TaskSpecT, TaskStatusT>): Promise<void> {
    const stop = this.stopping.signal
    const silenceMs = this.o.jobs.watchSilenceSeconds * 1000
    let pause = 1000
    let rv: string | undefined
    while (!stop.aborted) {
      // A watch that hears nothing (no event, no BOOKMARK) for silenceMs is on a connection that
      // died without a word (a host gone, a partition): it is dropped and resumed from rv.
      const silent = new AbortController()
      let timer: NodeJS.Timeout | undefined
      const heard = () => {
        clearTimeout(timer)
        timer = setTimeout(() => {
          this.log.warn({ silenceMs }, 'no word from the apiserver on the task watch: watching again')
          silent.abort()
        }, silenceMs)
      }
      heard()
      try {
        for await (const ev of client.watch({
          fieldSelector: `spec.host=${this.o.hostName}`,
          signal: AbortSignal.any([stop, silent.signal]),
          retryMs: 1000,
          ...(rv === undefined ? {} : { resourceVersion: rv }),
          onReconnect: (err) => this.log.debug({ err }, 'task watch reconnecting'),
        })) {
          heard()
          pause = 1000
          rv = ev.object.metadata?.resourceVersion || rv
          this.onEvent(ev)
        }
      } catch (err) {
        if (stop.aborted) return
        // Refused (a wrong token, a herd without jobs): not the watch's kind of error to ride out
        // quietly; say it and try again slowly.
        this.log.error({ err: toShoalError(err) }, 'cannot watch distribution tasks; trying again')
        await sleep(pause, stop)
        pause = Math.min(pause * 2, 30_000)
      } finally {
        clearTimeout(timer)
      }
    }
  }

  private onEvent(ev: WatchEvent<DistributionTask>): void {
    try {
      this.handle(ev)
    } catch (err) {
      // One odd object must not end the watch of every other task.
      this.log.error({ err, task: ev.object?.metadata?.name }, 'cannot handle a task watch event')
    }
  }

  private handle(ev: WatchEvent<DistributionTask>): void {
    if (ev.type === 'BOOKMARK') return
    const k = key(ev.object)
    if (ev.type === 'DELETED') {
      const e = this.entries.get(k)
      if (!e) return
      if (e.run) this.abortRun(e, 'deleted')
      else this.entries.delete(k)
      return
    }
    const obj = ev.object
    // The field selector says so; a task of another host is never ours to touch.
    if (obj.spec?.host !== this.o.hostName) return
    const e = this.entries.get(k) ?? { latest: obj, queued: false }
    e.latest = obj
    this.entries.set(k, e)
    this.evaluate(k, e)
  }

  private evaluate(k: string, e: Entry): void {
    const obj = e.latest
    const { uid, generation } = obj.metadata
    if (e.run) {
      if (uid !== e.run.uid) this.abortRun(e, 'superseded')
      else if (generation > e.run.generation)
        this.abortRun(e, obj.spec.cancelled ? 'cancelled' : 'superseded')
      return
    }
    if (obj.metadata.deletionTimestamp) return
    if (e.done && e.done.uid === uid && e.done.generation >= generation) return
    if (this.cancelledAfterSuccess(e, obj)) return
    if (isFinal(obj)) return
    if (obj.spec.cancelled) {
      this.finishCancelled(e, obj)
      return
    }
    if (!e.queued) {
      e.queued = true
      this.queue.push(k)
    }
    this.pump()
  }

  private pump(): void {
    while (this.running < this.o.jobs.concurrency && this.queue.length > 0 && !this.stopping.signal.aborted) {
      const k = this.queue.shift() as string
      const e = this.entries.get(k)
      if (!e) continue
      e.queued = false
      if (e.run) continue
      const p = this.run(k, e).finally(() => this.runs.delete(p))
      this.runs.add(p)
    }
  }

  private sinkOf(e: Entry, obj: DistributionTask): StatusSink {
    const ref = { namespace: obj.metadata.namespace, name: obj.metadata.name, uid: obj.metadata.uid }
    if (!e.sink || e.sink.task.uid !== ref.uid)
      e.sink = new StatusSink(
        this.client as ResourceClient<TaskSpecT, TaskStatusT>,
        ref,
        this.log,
        this.stopping.signal,
      )
    return e.sink
  }

  /**
   * A cancel that reached us after our run of the same work placed its file: the task stays
   * Succeeded (for the cancel's generation), over the controller's "cancelled". True if so.
   */
  private cancelledAfterSuccess(e: Entry, obj: DistributionTask): boolean {
    const status = succeededBeforeCancel(e.done, obj)
    if (!e.done || !status) return false
    e.done = { ...e.done, generation: obj.metadata.generation }
    this.sinkOf(e, obj).set(status)
    this.log.info(taskFields(obj), 'job task cancelled after it succeeded: it stays Succeeded')
    return true
  }

  /** A cancelled task that never ran here (or whose run ended before the cancel arrived). */
  private finishCancelled(e: Entry, obj: DistributionTask): void {
    const { uid, generation } = obj.metadata
    e.done = { uid, generation, attempt: obj.spec.attempt }
    this.sinkOf(e, obj).set(cancelledBeforeRun(obj.status, generation))
    this.log.info(taskFields(obj), 'job task cancelled before it ran')
    this.finished?.inc({ action: obj.spec.action, outcome: 'cancelled' })
  }

  private abortRun(e: Entry, reason: AbortReason): void {
    if (!e.run || e.run.abort.signal.aborted) return
    e.run.reason = reason
    e.run.abort.abort(new ShoalError('ABORTED', `task ${reason}`))
  }

  private async run(k: string, e: Entry): Promise<void> {
    const obj = e.latest
    const { uid, generation } = obj.metadata
    const spec = obj.spec
    const run: Run = { uid, generation, abort: new AbortController() }
    e.run = run
    this.running++
    const sink = this.sinkOf(e, obj)
    const started = Date.now()
    const startedAt = new Date(started).toISOString()
    const attempts = (obj.status?.attempts ?? 0) + 1
    const base = { observedGeneration: generation, attempts, startedAt }
    let bytes = 0
    let lastWrite = started
    sink.set({ phase: 'Running', ...base, bytes: 0, seconds: 0 })
    this.log.info({ ...taskFields(obj), attempts }, 'job task started')
    const deadlineAt = taskDeadline(obj, started)
    const deadline =
      deadlineAt === undefined
        ? undefined
        : setTimeout(() => this.abortRun(e, 'deadline'), Math.max(0, deadlineAt - Date.now()))
    let outcome: TaskOutcome | undefined
    let failure: ShoalError | undefined
    try {
      outcome = await executeTask(spec, {
        agent: this.o.agentUrl(),
        proxy: this.o.jobs.proxy,
        hostName: this.o.hostName,
        roots: this.roots,
        ...(this.o.jobs.csgw ? { csgw: this.o.jobs.csgw } : {}),
        flag: this.o.jobs.flag,
        bandwidthClasses: this.o.jobs.bandwidthClasses,
        signal: run.abort.signal,
        onBytes: (b) => {
          bytes = b
          const now = Date.now()
          if (now - lastWrite < this.o.jobs.progressSeconds * 1000 || run.abort.signal.aborted) return
          lastWrite = now
          sink.set({ phase: 'Running', ...base, bytes, seconds: (now - started) / 1000 })
        },
      })
    } catch (err) {
      failure = toShoalError(err)
    } finally {
      clearTimeout(deadline)
      this.running--
      e.run = undefined
    }
    const seconds = (Date.now() - started) / 1000
    const reason = run.reason
    // Cut short by a stop, a newer spec or a delete: no result to report; the next start (or the
    // newer spec) runs it again.
    if (failure && (reason === 'stopping' || reason === 'superseded' || reason === 'deleted')) {
      this.log.info({ ...taskFields(obj), reason }, 'job task interrupted')
    } else {
      // A finished run is final for the generation it ran, or for the cancel that cut it short.
      const observed =
        reason === 'cancelled' ? Math.max(generation, e.latest.metadata.generation) : generation
      e.done = { uid, generation: observed, attempt: spec.attempt }
      if (outcome) {
        // Placed before any cancel could stop it: the truth is Succeeded, cancel or not.
        e.done.status = succeeded(base, observed, outcome, seconds)
        sink.set(e.done.status)
        this.log.info({ ...taskFields(obj), ...outcome, seconds }, 'job task succeeded')
        this.finished?.inc({ action: spec.action, outcome: 'succeeded' })
      } else {
        const f = failureOf(failure as ShoalError, reason, spec)
        sink.set(failed(base, observed, f, bytes, seconds))
        this.log.warn(
          { ...taskFields(obj), err: f, seconds },
          reason === 'cancelled' ? 'job task cancelled' : 'job task failed',
        )
        this.finished?.inc({ action: spec.action, outcome: reason === 'cancelled' ? 'cancelled' : 'failed' })
      }
    }
    if (!this.stopping.signal.aborted) {
      const cur = this.entries.get(k)
      if (cur === e) {
        if (reason === 'deleted') this.entries.delete(k)
        else this.evaluate(k, e)
      }
      this.pump()
    }
  }
}
