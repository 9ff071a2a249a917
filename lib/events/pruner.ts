/**
 * The retention of the event log: a herd part that, at start and every
 * `pruneIntervalSeconds`, deletes events beyond `maxEvents` (the oldest first) and older than
 * `maxAgeSeconds`. Names sort by time, so "oldest" is list order. Several herds sharing a Redis
 * store may prune at once: an event another one deleted first (NOT_FOUND) is simply gone.
 */
import type { ResourceStore } from '../apiserver/store/types.js'
import { isShoalError } from '../errors/index.js'
import { Lifecycle, type Service } from '../lifecycle/index.js'
import type { Logger } from '../log/index.js'
import type { EventsConfig } from './config.js'
import { EVENTS_NAMESPACE, EventKind, timeOfName } from './kind.js'

/** Deletes at once: the file store commits concurrent writes with one fsync. */
const DELETE_CONCURRENCY = 16

export class EventPruner implements Service {
  private readonly log: Logger
  private timer: NodeJS.Timeout | undefined
  private running: Promise<unknown> | undefined
  private readonly life = new Lifecycle('event pruner', {
    start: async () => {
      this.tick()
    },
    stop: async () => {
      if (this.timer) clearTimeout(this.timer)
      this.timer = undefined
      await this.running
    },
  })
  private stopped = false

  constructor(
    private readonly store: ResourceStore,
    private readonly retention: EventsConfig['retention'],
    deps: { logger: Logger; namespace?: string; now?: () => number },
  ) {
    this.log = deps.logger.child({ component: 'events' })
    this.namespace = deps.namespace ?? EVENTS_NAMESPACE
    this.now = deps.now ?? Date.now
  }

  private readonly namespace: string
  private readonly now: () => number

  start(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal)
  }

  async stop(): Promise<void> {
    this.stopped = true
    await this.life.stop()
  }

  private tick(): void {
    this.running = this.prune()
      .catch((err) => this.log.warn({ err }, 'cannot prune the event log; trying again later'))
      .finally(() => {
        if (this.stopped) return
        this.timer = setTimeout(() => this.tick(), this.retention.pruneIntervalSeconds * 1000)
        this.timer.unref()
      })
  }

  /** One pass; returns how many events it deleted. */
  async prune(): Promise<number> {
    const list = await this.store.list(EventKind, { namespace: this.namespace })
    const names = list.items.map((o) => o.metadata.name)
    const oldest = this.now() - this.retention.maxAgeSeconds * 1000
    // Names are in time order: everything before the cut goes.
    let cut = Math.max(0, names.length - this.retention.maxEvents)
    while (cut < names.length && timeOfName(names[cut] as string) < oldest) cut++
    const doomed = names.slice(0, cut)
    let deleted = 0
    for (let i = 0; i < doomed.length && !this.stopped; i += DELETE_CONCURRENCY) {
      const batch = doomed.slice(i, i + DELETE_CONCURRENCY)
      await Promise.all(
        batch.map((name) =>
          this.store.delete(EventKind, this.namespace, name).then(
            () => deleted++,
            (err) => {
              if (!isShoalError(err, 'NOT_FOUND')) throw err
            },
          ),
        ),
      )
    }
    if (deleted > 0) this.log.info({ deleted, kept: names.length - cut }, 'event log pruned (retention)')
    return deleted
  }
}
