/**
 * The build-index daemon: maps human-readable tags to sha256 digests (docs/architecture.md §4).
 *
 *   PUT    /tags/:tag/digest/:digest[?ns=]  point a tag at a digest the origins hold; optional
 *                                           JSON body {type?, desc?} (lib/core/tag-meta.ts)
 *   GET    /tags/:tag                       { tag, digest, createdAt, updatedAt, ns?, type?, desc? }
 *   HEAD   /tags/:tag                       200 / 404
 *   DELETE /tags/:tag[?purge=true]          204; an immutable version leaves a tombstone, which
 *                                           only purge (allowed per config.purgeFrom) removes
 *   GET    /tags/:tag/history[?limit=&after=]  { tag, entries (newest first), next? }: creations,
 *                                           moves, deletes; `after` is an entry's seq
 *   GET    /digests/:digest/tags[?limit=&after=]  { tags, next? }: the tags pointing at a digest
 *   GET    /list[/:prefix][?limit=&after=]  { tags, next? }; `GET /list` and `GET /list/` list all
 *   GET    /replication                     { remotes: [{ name, buildIndex, queued, oldestAgeSeconds,
 *                                           replicated, lastError? }] } (server/replication.ts)
 *
 * Tags are one percent-encoded path segment each ('/' written %2F). Writes record who made
 * them from the `x-shoal-actor` header, else the remote address (server/history.ts).
 */
import { type Backend, createBackend } from '../../backend/index.js'
import {
  DEFAULT_NAMESPACE,
  Digest,
  MAX_TAG_META_BODY,
  parseNamespace,
  parseTagMetaBody,
  printable,
  Tag,
  tagMetaOf,
} from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import { daemonEvents, type EventRecorder, type QueuedEventRecorder } from '../../events/index.js'
import { HttpServer, type RouteContext, readBody, sendEmpty, sendJson } from '../../http/index.js'
import { Lifecycle, type Service } from '../../lifecycle/index.js'
import type { Logger } from '../../log/index.js'
import { createRegistry, type Registry } from '../../metrics/index.js'
import { type OriginClientFactory, OriginCluster } from '../../origin/client/index.js'
import { closeRedis, connectRedis, type Redis, redactedRedisUrl } from '../../redis/index.js'
import type { BuildIndexConfig } from '../config.js'
import { type BlobCheck, OriginBlobCheck } from './blob-check.js'
import { BlobGc } from './gc.js'
import { ACTOR_HEADER, actorOf, TagHistory } from './history.js'
import { Replicator } from './replication.js'
import { recordTagDelete, recordTagPut } from './tag-events.js'
import { RedisTagLock } from './tag-lock.js'
import { TAG_PREFIX, TagStore } from './tags.js'

export { type BlobCheck, OriginBlobCheck } from './blob-check.js'
export { BlobGc, GC_PREFIX, type GcEntry } from './gc.js'
export {
  ACTOR_HEADER,
  actorOf,
  HISTORY_PREFIX,
  type HistoryEntry,
  type HistoryPage,
  TagHistory,
} from './history.js'
export { KeyedMutex } from './mutex.js'
export { LocalTagLock, type LockHold, RedisTagLock, type TagLock } from './tag-lock.js'
export { type PutResult, TAG_PREFIX, type TagPage, type TagRecord, TagStore, tagObjectKey } from './tags.js'

const INDEX_RETRY_MS = 30_000
/** start() waits this long for the digest → tags index before it lets indexing go on in the background. */
const INDEX_WAIT_MS = 5_000

export interface BuildIndexDeps {
  logger: Logger
  registry?: Registry
  /** Where tags are stored (default: built from `config.backend`). */
  backend?: Backend
  /** Builds the clients of the origins, configured and owners (default: new OriginClient). */
  originClientFor?: OriginClientFactory
  /** Replaces the whole "does the origin cluster hold this blob" check (tests). */
  blobCheck?: BlobCheck
  /** The event log (docs/events.md); default: events are only logged. */
  events?: EventRecorder
}

export class BuildIndexServer implements Service {
  readonly http: HttpServer
  readonly tags: TagStore
  readonly registry: Registry
  private readonly log: Logger
  private readonly backend: Backend
  private readonly stopping = new AbortController()
  private readonly life = new Lifecycle('build-index', {
    start: (signal) => this.doStart(signal),
    stop: () => this.shutdown(),
  })
  private indexing: Promise<void> | undefined
  private retry: NodeJS.Timeout | undefined
  private readonly origins: OriginCluster
  /** Connected at start when config.redis is set: the tag locks shared with other instances. */
  private redis: Redis | undefined
  /** Pushes matching tags to the remotes (undefined: no remotes configured). */
  readonly replicator: Replicator | undefined
  /** Deletes blobs no tag refers to after the grace period (undefined: gc.enabled is false). */
  readonly gc: BlobGc | undefined
  private readonly events: EventRecorder
  private readonly ownEvents: QueuedEventRecorder | undefined

  constructor(
    readonly config: BuildIndexConfig,
    deps: BuildIndexDeps,
  ) {
    this.log = deps.logger.child({ component: 'build-index' })
    this.registry = deps.registry ?? createRegistry('build-index', { processMetrics: true })
    this.backend = deps.backend ?? createBackend(config.backend)
    const ev = daemonEvents(config.events, { ...deps, service: 'build-index', registry: this.registry })
    this.events = ev.events
    this.ownEvents = ev.owned
    this.origins = new OriginCluster(config.origins, deps.originClientFor, {
      health: config.originHealth,
      logger: this.log,
      registry: this.registry,
    })
    const blobCheck = deps.blobCheck ?? new OriginBlobCheck(this.origins)
    this.tags = new TagStore({
      backend: this.backend,
      blobCheck,
      logger: deps.logger,
      registry: this.registry,
      history: config.history.enabled ? new TagHistory(this.backend, config.history.maxEntries) : undefined,
      lock: config.redis ? new RedisTagLock(() => this.redis, config.lock) : undefined,
    })
    if (config.remotes.length > 0) {
      this.replicator = new Replicator({
        backend: this.backend,
        remotes: config.remotes,
        origins: this.origins,
        logger: deps.logger,
        registry: this.registry,
        maxBackoffMs: config.replication.maxBackoffMs,
        current: async (name, signal) => (await this.tags.find(Tag.parse(name), signal))?.digest,
      })
    }
    if (config.gc.enabled) {
      this.gc = new BlobGc({
        backend: this.backend,
        tags: this.tags,
        origins: this.origins,
        logger: deps.logger,
        registry: this.registry,
        graceMs: config.gc.graceMs,
        sweepIntervalMs: config.gc.sweepIntervalMs,
        events: this.events,
      })
    }
    this.http = new HttpServer({
      name: 'build-index',
      logger: deps.logger,
      limits: config.server,
      registry: this.registry,
      // A stat of a key that need not exist proves the backend answers; a list could walk every tag.
      readiness: async () => {
        await this.backend.stat(`${TAG_PREFIX}readiness-probe`)
      },
      onStart: () =>
        this.log.info(
          { url: this.url, backend: this.backend.kind, origins: this.config.origins },
          'build-index started',
        ),
      onStop: () => this.log.info('build-index stopped'),
    })
    this.routes()
  }

  /** Binds, then indexes existing tags (lib/lifecycle contract: idempotent, undone when it fails). */
  start(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal)
  }

  /** Idempotent. */
  stop(): Promise<void> {
    return this.life.stop()
  }

  private async doStart(signal: AbortSignal | undefined): Promise<void> {
    // A backend that can be misconfigured remotely (S3) is checked before anything listens.
    await this.backend.check?.(signal)
    await this.ownEvents?.start()
    if (this.config.redis) {
      this.redis = await connectRedis(this.config.redis, 'shoal-build-index')
      this.log.info({ redis: redactedRedisUrl(this.config.redis.url) }, 'tag writes locked through Redis')
    }
    await this.origins.start()
    await this.replicator?.start(signal)
    await this.gc?.start(signal)
    await this.http.start(this.config.server.port, this.config.server.host)
    this.indexing = this.indexExisting()
    // Usually done at once (already indexed, or few tags); a long first indexing goes on in the background.
    let timer: NodeJS.Timeout | undefined
    let onAbort: (() => void) | undefined
    await Promise.race([
      this.indexing,
      new Promise((r) => {
        timer = setTimeout(r, INDEX_WAIT_MS)
        onAbort = () => r(undefined)
        signal?.addEventListener('abort', onAbort, { once: true })
      }),
    ])
    clearTimeout(timer)
    if (onAbort) signal?.removeEventListener('abort', onAbort)
  }

  private async shutdown(): Promise<void> {
    this.stopping.abort()
    if (this.retry) clearTimeout(this.retry)
    await this.gc?.stop()
    await this.replicator?.stop()
    await this.http.stop()
    await this.origins.stop()
    await this.indexing
    if (this.redis) await closeRedis(this.redis)
    this.redis = undefined
    await this.ownEvents?.stop()
  }

  /**
   * Indexes tags stored before the digest → tags index existed, in the background (the API
   * serves meanwhile; GET /digests/:digest/tags answers 503 until it is done), retrying on failure.
   */
  private async indexExisting(): Promise<void> {
    try {
      await this.tags.indexExisting(this.stopping.signal)
    } catch (err) {
      if (this.stopping.signal.aborted) return
      this.log.error({ err }, 'cannot index existing tags by digest; blob deletes are refused until it works')
      this.retry = setTimeout(() => {
        this.indexing = this.indexExisting()
      }, INDEX_RETRY_MS)
      this.retry.unref()
    }
  }

  /** Records a GC candidate after the fact: a failure is logged (the blob stays), not the caller's. */
  private async gcCandidate(digest: Digest, ns: string): Promise<void> {
    await this.gc?.removed(digest, ns).catch((err) => {
      this.log.error(
        { err, digest: digest.toString() },
        'cannot record a GC candidate; the blob stays until its tags are removed again',
      )
    })
  }

  /** Queues a tag for the remotes it matches; a failure is logged and counted, the put stands. */
  private async replicate(tag: Tag, digest: Digest, ns: string): Promise<void> {
    await this.replicator?.enqueue(tag, digest, ns).catch((err) => {
      this.log.error(
        { err, tag: tag.toString(), digest: digest.toString() },
        'cannot queue a tag for replication; put it again to replicate it',
      )
    })
  }

  /** http://host:port actually bound (valid after start()). */
  get url(): string {
    return this.http.url
  }

  private routes(): void {
    const r = this.http.router
    r.put('/tags/:tag/digest/:digest', async ({ req, params, query, res, signal }) => {
      const tag = Tag.parse(params.tag ?? '')
      const digest = Digest.parse(params.digest ?? '')
      const ns = namespace(query, this.config.namespace)
      const actor = actorOf(req.headers[ACTOR_HEADER], req.socket.remoteAddress)
      const meta = parseTagMetaBody(await readBody(req, MAX_TAG_META_BODY))
      const write = { tag, digest, ns, actor }
      const done = await this.tags.put(tag, digest, { ns, signal, meta, actor }).catch((error) => {
        recordTagPut(this.events, write, { error })
        throw error
      })
      recordTagPut(this.events, write, done)
      const { record, result, previous } = done
      // `latest` moved: the previous digest may have lost its last tag (the sweep checks).
      if (previous) await this.gcCandidate(Digest.parse(previous), ns)
      if (result !== 'unchanged') await this.replicate(tag, digest, ns)
      sendJson(res, 200, {
        tag: record.tag,
        digest: record.digest,
        result,
        ...(previous ? { previous } : {}),
        ...tagMetaOf(record),
      })
    })
    r.get('/tags/:tag', async ({ params, res, signal }) => {
      const record = await this.tags.get(Tag.parse(params.tag ?? ''), signal)
      sendJson(res, 200, record)
    })
    r.delete('/tags/:tag', async ({ req, params, query, res, signal }) => {
      const tag = Tag.parse(params.tag ?? '')
      const purge = parsePurge(query.get('purge'))
      const actor = actorOf(req.headers[ACTOR_HEADER], req.socket.remoteAddress)
      if (purge) checkPurgeAllowed(this.config.purgeFrom, req.socket.remoteAddress, tag)
      // Recorded before the tag goes: a crash in between leaves a candidate (kept at the sweep
      // while the tag exists), never an unreferenced blob nobody will collect.
      const before = await this.tags.find(tag, signal)
      if (before && this.gc)
        await this.gc.removed(Digest.parse(before.digest), before.ns ?? this.config.namespace, signal)
      const removed = await this.tags.delete(tag, { purge, signal, actor }).catch((error) => {
        recordTagDelete(this.events, { tag, actor, purge }, { error })
        throw error
      })
      recordTagDelete(this.events, { tag, actor, purge }, { removed })
      if (removed && removed.digest !== before?.digest)
        await this.gcCandidate(Digest.parse(removed.digest), removed.ns ?? this.config.namespace)
      sendEmpty(res, 204)
    })
    r.get('/tags/:tag/history', async ({ params, query, res, signal }) => {
      const tag = Tag.parse(params.tag ?? '')
      const history = this.tags.history
      if (!history)
        throw new ShoalError('NOT_FOUND', 'tag history is disabled on this build-index (history.enabled)')
      const limit = parseLimit(query.get('limit'), this.config.list.defaultLimit, this.config.list.maxLimit)
      sendJson(res, 200, await history.page(tag, { after: parseSeq(query.get('after')), limit, signal }))
    })
    r.get('/replication', ({ res }) => {
      sendJson(res, 200, { remotes: this.replicator?.status() ?? [] })
    })
    r.get('/digests/:digest/tags', async ({ params, query, res, signal }) => {
      const digest = Digest.parse(params.digest ?? '')
      const limit = parseLimit(query.get('limit'), this.config.list.defaultLimit, this.config.list.maxLimit)
      const after = query.get('after') || undefined
      sendJson(res, 200, await this.tags.tagsOf(digest, { after, limit, signal }))
    })
    const list = async ({ params, query, res, signal }: RouteContext) => {
      const limit = parseLimit(query.get('limit'), this.config.list.defaultLimit, this.config.list.maxLimit)
      const after = query.get('after') ?? undefined
      sendJson(
        res,
        200,
        await this.tags.list(params.prefix ?? '', { after: after || undefined, limit, signal }),
      )
    }
    r.get('/list', list)
    r.get('/list/', list)
    r.get('/list/:prefix', list)
  }
}

export async function startBuildIndex(
  config: BuildIndexConfig,
  deps: BuildIndexDeps,
): Promise<BuildIndexServer> {
  const server = new BuildIndexServer(config, deps)
  await server.start()
  return server
}

export function namespace(query: URLSearchParams, fallback = DEFAULT_NAMESPACE): string {
  const ns = query.get('ns')
  if (ns === null || ns === '') return fallback
  return parseNamespace(ns)
}

function parsePurge(value: string | null): boolean {
  if (value === null || value === '' || value === 'false') return false
  if (value === 'true') return true
  throw new ShoalError('BAD_REQUEST', `invalid purge "${printable(value)}": expected true or false`)
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/

/**
 * Purging a tombstone lets an immutable version point at other bytes: an operator's act, not
 * a pusher's. Until write endpoints take tokens, "loopback" (the default) accepts it only from
 * the build-index host itself; the proxy never forwards it.
 */
function checkPurgeAllowed(from: 'loopback' | 'anywhere' | 'nowhere', address: string | undefined, tag: Tag) {
  if (from === 'anywhere' || (from === 'loopback' && LOOPBACK.test(address ?? ''))) return
  throw new ShoalError(
    'FORBIDDEN',
    `purging the tombstone of ${tag} is not allowed from ${address ?? 'this client'} (purgeFrom: ${from}); run it on the build-index host, e.g. curl -X DELETE 'http://127.0.0.1:<port>/tags/<tag>?purge=true'`,
  )
}

/** A history cursor: the seq of the last entry of the previous page. */
function parseSeq(value: string | null): number | undefined {
  if (value === null || value === '') return undefined
  if (!/^[0-9]{1,15}$/.test(value) || Number(value) < 1)
    throw new ShoalError(
      'BAD_REQUEST',
      `invalid after "${printable(value)}": expected an entry's seq (a whole number from 1)`,
    )
  return Number(value)
}

function parseLimit(value: string | null, fallback: number, max: number): number {
  if (value === null || value === '') return fallback
  if (!/^[0-9]{1,9}$/.test(value) || Number(value) < 1) {
    throw new ShoalError(
      'BAD_REQUEST',
      `invalid limit "${printable(value)}": expected a whole number from 1 to ${max}`,
    )
  }
  return Math.min(Number(value), max)
}
