/**
 * Replication of tags to remote clusters (config `remotes`). A tag put here (created or moved)
 * whose name matches one of a remote's regexes is queued for that remote; a worker then pushes
 * the blob to the remote's origins (skipped when they hold it already), streaming it from the
 * local origins through OriginClient (download here, chunked upload there: the same clients the
 * proxy uses, nothing duplicated), and only then puts the tag into the remote build-index, so a
 * remote tag never points at a blob the remote cannot serve.
 *
 * The queue is persisted like the origin's write-back marks (lib/origin/server/writeback-queue.ts):
 * one small JSON object per pending item, written before the put is answered and deleted once
 * done, here in build-index's backend (`replication/<remote>/<tagKey>`, so instances sharing a
 * backend share the queue) rather than on a local disk build-index does not have. One item per
 * (remote, tag): a later put of the tag replaces a pending one (the remote gets the newest
 * digest; intermediate moves of `latest` are not replayed there). Each remote has its own worker,
 * so a remote that is down or hangs delays only its own queue. Failed attempts retry forever,
 * 1 s doubling to maxBackoffMs with jitter; an immutable version the remote holds at other bytes
 * (TAG_CONFLICT) is dropped with an error (retrying cannot fix it). Deletes are not replicated.
 */
import type { Backend } from '../../backend/types.js'
import { BuildIndexClient } from '../../build-index/client/index.js'
import { z } from '../../config/index.js'
import { Digest, type Tag, tagKey } from '../../core/index.js'
import { isShoalError, ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { type Counter, counter, Gauge, type Registry } from '../../metrics/index.js'
import { OriginCluster } from '../../origin/client/index.js'
import { parseJsonWith, readSmall } from './refs.js'

export const REPLICATION_PREFIX = 'replication/'
const BASE_BACKOFF_MS = 1000

export const RemoteConfig = z.strictObject({
  /** Names the remote in keys, metrics and GET /replication. */
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, '1-64 of A-Z a-z 0-9 . _ -'),
  /** The remote build-index (host:port). */
  buildIndex: z.string().min(1),
  /** The remote cluster's origins (host:port), which are asked who owns a blob, as the proxy does. */
  origins: z.array(z.string().min(1)).min(1),
  /** Tags matching any of these (JavaScript regexes, unanchored) are replicated. */
  tags: z
    .array(
      z.string().refine((s) => {
        try {
          new RegExp(s)
          return true
        } catch {
          return false
        }
      }, 'not a valid regular expression'),
    )
    .min(1),
})
export type RemoteConfig = z.infer<typeof RemoteConfig>

const ItemSchema = z.object({
  tag: z.string(),
  digest: z.string(),
  ns: z.string(),
  queuedAt: z.number(),
  attempts: z.number().int().min(0),
  lastError: z.string().optional(),
})
type Item = z.infer<typeof ItemSchema> & { nextAt: number }

interface Remote {
  config: RemoteConfig
  patterns: RegExp[]
  origins: OriginCluster
  buildIndex: BuildIndexClient
  items: Map<string, Item>
  lastError?: { at: string; message: string }
  replicated: number
  /** Each remote has its own worker: a remote that hangs delays only its own queue. */
  timer?: NodeJS.Timeout
  running?: Promise<void>
}

export interface RemoteStatus {
  name: string
  buildIndex: string
  queued: number
  /** Age of the oldest queued item (0: none): the replication lag. */
  oldestAgeSeconds: number
  replicated: number
  lastError?: { at: string; message: string }
}

export interface ReplicatorOptions {
  backend: Backend
  remotes: RemoteConfig[]
  /** This cluster's origins: where blobs are read from. */
  origins: OriginCluster
  logger: Logger
  registry: Registry
  maxBackoffMs: number
  /** Who the remote's history names (default "replication"). */
  actor?: string
  /** The digest the tag points at here now (undefined: gone), asked before each attempt. */
  current: (tag: string, signal?: AbortSignal) => Promise<string | undefined>
}

export class Replicator {
  private readonly remotes: Remote[]
  private readonly log: Logger
  private readonly attempts: Counter
  private stopping = new AbortController()
  private stopped = true

  constructor(private readonly opts: ReplicatorOptions) {
    this.log = opts.logger.child({ component: 'build-index-replication' })
    this.remotes = opts.remotes.map((config) => ({
      config,
      patterns: config.tags.map((s) => new RegExp(s)),
      origins: new OriginCluster(config.origins, undefined, { logger: this.log }),
      buildIndex: new BuildIndexClient(config.buildIndex, { timeoutMs: 30_000 }),
      items: new Map(),
      replicated: 0,
    }))
    this.attempts = counter(
      opts.registry,
      'shoal_build_index_replication_attempts_total',
      'Attempts to replicate a tag (and its blob) to a remote, by remote and result',
      ['remote', 'result'],
    )
    const remotes = this.remotes
    // Collected on scrape, per remote: queue length and lag.
    for (const [metric, help, read] of [
      [
        'shoal_build_index_replication_queued',
        'Tags waiting to be replicated, by remote',
        (r: Remote) => r.items.size,
      ],
      [
        'shoal_build_index_replication_oldest_seconds',
        'Age of the oldest tag waiting to be replicated, by remote (0: none)',
        (r: Remote) => oldestAge(r),
      ],
    ] as const) {
      if (opts.registry.getSingleMetric(metric)) opts.registry.removeSingleMetric(metric)
      new Gauge({
        name: metric,
        help,
        labelNames: ['remote'],
        registers: [opts.registry],
        collect() {
          for (const r of remotes) this.set({ remote: r.config.name }, read(r))
        },
      })
    }
  }

  /** Loads the queue a previous run (or another instance) left, then works it. */
  async start(signal?: AbortSignal): Promise<void> {
    this.stopping = new AbortController()
    for (const remote of this.remotes) {
      await remote.origins.start()
      const prefix = `${REPLICATION_PREFIX}${remote.config.name}/`
      let after: string | undefined
      do {
        const page = await this.opts.backend.list(prefix, { after, limit: 1000, signal })
        for (const key of page.keys) {
          const item = await this.read(key, signal)
          if (item) remote.items.set(key, { ...item, nextAt: Date.now() })
        }
        after = page.next
      } while (after !== undefined)
      if (remote.items.size > 0)
        this.log.info({ remote: remote.config.name, queued: remote.items.size }, 'replication queue loaded')
    }
    this.stopped = false
    for (const remote of this.remotes) this.schedule(remote, 0)
  }

  async stop(): Promise<void> {
    this.stopped = true
    for (const remote of this.remotes) if (remote.timer) clearTimeout(remote.timer)
    this.stopping.abort()
    await Promise.all(this.remotes.map((r) => r.running))
    for (const remote of this.remotes) await remote.origins.stop()
  }

  /** Queues `tag` → `digest` for every remote it matches; resolves once the items are durable. */
  async enqueue(tag: Tag, digest: Digest, ns: string, signal?: AbortSignal): Promise<number> {
    const name = tag.toString()
    const woken: Remote[] = []
    for (const remote of this.remotes) {
      if (!remote.patterns.some((p) => p.test(name))) continue
      const key = `${REPLICATION_PREFIX}${remote.config.name}/${tagKey(name)}`
      const item: Item = {
        tag: name,
        digest: digest.toString(),
        ns,
        queuedAt: Date.now(),
        attempts: 0,
        nextAt: 0,
      }
      await this.save(key, item, signal)
      remote.items.set(key, item)
      woken.push(remote)
    }
    for (const remote of woken) this.schedule(remote, 0)
    return woken.length
  }

  /** Per remote: queued, lag, last error (GET /replication). */
  status(): RemoteStatus[] {
    return this.remotes.map((r) => ({
      name: r.config.name,
      buildIndex: r.config.buildIndex,
      queued: r.items.size,
      oldestAgeSeconds: oldestAge(r),
      replicated: r.replicated,
      ...(r.lastError ? { lastError: r.lastError } : {}),
    }))
  }

  private schedule(remote: Remote, delayMs: number): void {
    if (this.stopped) return
    if (remote.timer) clearTimeout(remote.timer)
    remote.timer = setTimeout(() => {
      remote.timer = undefined
      if (remote.running) return // its finally() schedules the next round
      remote.running = this.work(remote).finally(() => {
        remote.running = undefined
        this.schedule(remote, this.nextDelay(remote))
      })
    }, delayMs)
    remote.timer.unref()
  }

  private nextDelay(remote: Remote): number {
    let next = Number.POSITIVE_INFINITY
    for (const i of remote.items.values()) next = Math.min(next, i.nextAt)
    // Nothing queued: enqueue() wakes the worker; a long timer only guards against a missed wake.
    return Number.isFinite(next) ? Math.max(10, next - Date.now()) : 60_000
  }

  /** The remote's due items, one at a time, in queue order. */
  private async work(remote: Remote): Promise<void> {
    const due = [...remote.items.entries()]
      .filter(([, i]) => i.nextAt <= Date.now())
      .sort((a, b) => a[1].queuedAt - b[1].queuedAt)
    for (const [key, item] of due) {
      if (this.stopping.signal.aborted) return
      await this.attempt(remote, key, item)
    }
  }

  private async attempt(remote: Remote, key: string, item: Item): Promise<void> {
    const signal = this.stopping.signal
    const name = remote.config.name
    try {
      // A stale item (the tag moved or was deleted since; or another instance sharing the
      // backend already replaced it) must not move the remote's tag back: the put that
      // changed the tag queued its own item.
      const now = await this.opts.current(item.tag, signal)
      if (now !== item.digest) {
        this.attempts.inc({ remote: name, result: 'superseded' })
        this.log.debug(
          { remote: name, tag: item.tag, digest: item.digest, now },
          'replication item superseded',
        )
        await this.done(remote, key, item)
        return
      }
      await this.replicate(remote, item, signal)
    } catch (err) {
      if (signal.aborted) return
      const message = (err as Error).message
      remote.lastError = { at: new Date().toISOString(), message }
      if (isShoalError(err, 'TAG_CONFLICT')) {
        this.attempts.inc({ remote: name, result: 'conflict' })
        this.log.error(
          { remote: name, tag: item.tag, digest: item.digest, err },
          'remote refuses the tag: dropped',
        )
        await this.done(remote, key, item)
        return
      }
      this.attempts.inc({ remote: name, result: 'failed' })
      item.attempts++
      item.lastError = message
      const delay = Math.min(this.opts.maxBackoffMs, BASE_BACKOFF_MS * 2 ** Math.min(item.attempts - 1, 30))
      item.nextAt = Date.now() + delay / 2 + (Math.random() * delay) / 2
      if (item.attempts === 1 || item.attempts % 10 === 0)
        this.log.warn(
          { remote: name, tag: item.tag, attempts: item.attempts, err: message },
          'replication failed; retrying',
        )
      // Only while still the tag's current item: a newer put has replaced it otherwise.
      if (remote.items.get(key) === item)
        await this.save(key, item).catch((e) => this.log.warn({ err: e }, 'cannot update a replication item'))
      return
    }
    this.attempts.inc({ remote: name, result: 'replicated' })
    remote.replicated++
    this.log.info({ remote: name, tag: item.tag, digest: item.digest }, 'tag replicated')
    await this.done(remote, key, item)
  }

  private async done(remote: Remote, key: string, item: Item): Promise<void> {
    if (remote.items.get(key) !== item) return // replaced by a newer put meanwhile: that one goes next
    remote.items.delete(key)
    await this.opts.backend.delete(key).catch((err) => {
      this.log.warn({ err, key }, 'cannot remove a replicated item; it is replicated again after a restart')
    })
  }

  /** Blob first (unless the remote holds it), then the tag. */
  private async replicate(remote: Remote, item: Item, signal: AbortSignal): Promise<void> {
    const digest = Digest.parse(item.digest)
    const held = await remote.origins.withOwner(digest, (o) => o.stat(item.ns, digest, signal), {
      signal,
      what: 'HEAD blob on the remote',
    })
    if (!held || held.pending) {
      const local = await this.opts.origins.withOwner(
        digest,
        async (o) => {
          const stat = await o.stat(item.ns, digest, signal)
          if (!stat) return undefined
          return { size: stat.size, body: await o.download(item.ns, digest, { signal }) }
        },
        { signal, what: 'read blob for replication' },
      )
      if (!local) {
        // Nothing to send: the tag here points at a blob its origins lost; an operator's matter.
        throw new ShoalError('BLOB_NOT_FOUND', `blob ${digest} is not in this cluster's origins`)
      }
      try {
        await remote.origins.withOwner(
          digest,
          (o) => o.upload(item.ns, digest, local.body, local.size, { signal }),
          { signal, what: 'push blob to the remote', retryable: () => false },
        )
      } finally {
        local.body.destroy()
      }
    }
    await remote.buildIndex.putTag(item.tag, digest, {
      ns: item.ns,
      signal,
      actor: this.opts.actor ?? 'replication',
    })
  }

  private async save(key: string, item: Item, signal?: AbortSignal): Promise<void> {
    const { nextAt: _nextAt, ...stored } = item
    const body = Buffer.from(JSON.stringify(stored))
    await this.opts.backend.put(key, body, { size: body.length, signal })
  }

  private async read(key: string, signal?: AbortSignal): Promise<z.infer<typeof ItemSchema> | undefined> {
    const raw = await readSmall(this.opts.backend, key, signal, 64 << 10, 'a replication item')
    if (raw === undefined) return undefined
    const item = parseJsonWith(ItemSchema, raw)
    if (!item || !Digest.isValid(item.digest)) {
      this.log.error({ key }, 'unreadable replication item skipped (delete the object to silence this)')
      return undefined
    }
    return item
  }
}

function oldestAge(r: Remote): number {
  let oldest = Number.POSITIVE_INFINITY
  for (const i of r.items.values()) oldest = Math.min(oldest, i.queuedAt)
  return Number.isFinite(oldest) ? Math.max(0, (Date.now() - oldest) / 1000) : 0
}
