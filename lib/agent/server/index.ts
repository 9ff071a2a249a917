/**
 * The agent daemon: one per host. Serves the local API PullCLI uses, downloads blobs through
 * the swarm into its cache, and seeds what it has to other agents.
 */
import { join, resolve } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { guarded, isLoopback, TokenAuth } from '../../auth/index.js'
import type { Clock } from '../../bandwidth/clock.js'
import { HostBandwidth, registerBandwidthRoutes } from '../../bandwidth/index.js'
import { BuildIndexClient, listQuery } from '../../build-index/client/index.js'
import { DEFAULT_NAMESPACE, Digest, parseNamespace, Tag, type TagType, tagMetaOf } from '../../core/index.js'
import { isShoalError, ShoalError } from '../../errors/index.js'
import { HttpServer, type RouteContext, sendEmpty, sendJson } from '../../http/index.js'
import { Lifecycle, type Service } from '../../lifecycle/index.js'
import type { Logger } from '../../log/index.js'
import { createRegistry, type Registry } from '../../metrics/index.js'
import { BlobStore } from '../../store/index.js'
import { TorrentEngine } from '../../torrent/index.js'
import { type TrackerLike, TrackerSet } from '../../tracker/client/index.js'
import type { DownloadProgress } from '../client/index.js'
import type { AgentConfig } from '../config.js'
import { TaskWorker } from '../jobs/worker.js'
import { AgentCachePolicy } from './cache-policy.js'
import { Downloads } from './downloads.js'
import { INGRESS_CAP_HEADER, parseIngressCap } from './ingress-caps.js'
import { ResumeJournal } from './journal.js'
import { TagCache } from './tag-cache.js'

export interface AgentDeps {
  logger: Logger
  registry?: Registry
  buildIndex?: BuildIndexClient
  /** Stand-ins for config.trackers (tests); either way they are used as one TrackerSet. */
  trackers?: Array<string | TrackerLike>
  /** Runs the cache sweeps (tests: a ManualClock). */
  clock?: Clock
  /** Wall-clock ms for the cache's last-use times (tests move it forward). */
  now?: () => number
}

export class AgentServer implements Service {
  readonly store: BlobStore
  readonly engine: TorrentEngine
  /** The configured trackers: rendezvous choice per infohash, with failover. */
  readonly trackers: TrackerSet
  /** The host's caps (config.bandwidth), changeable through PUT /bandwidth. */
  readonly bandwidth: HostBandwidth
  /** TTL and watermark eviction of cached blobs, and DELETE /blobs/:digest. */
  readonly cache: AgentCachePolicy
  private readonly journal: ResumeJournal
  /** Immutable versions resolved before, answered while build-index is unreachable. */
  readonly tagCache: TagCache
  /** Tags answered from the cache since build-index last answered for them (warned once each). */
  private readonly offlineWarned = new Set<string>()
  private readonly http: HttpServer
  private readonly downloads: Downloads
  private readonly buildIndex: BuildIndexClient
  private readonly log: Logger
  /** Runs this host's distribution tasks; only when `jobs.apiserver` is set. */
  readonly jobs: TaskWorker | undefined
  private readonly life = new Lifecycle('agent', {
    start: (signal) => this.doStart(signal),
    stop: () => this.shutdown(),
  })
  private ready = false
  private auth: TokenAuth | undefined

  constructor(
    readonly config: AgentConfig,
    deps: AgentDeps,
  ) {
    this.log = deps.logger.child({ component: 'agent' })
    const registry = deps.registry ?? createRegistry('agent', { processMetrics: true })
    this.trackers = new TrackerSet(deps.trackers ?? config.trackers, {
      logger: deps.logger,
      registry,
      ...(config.zone === undefined ? {} : { zone: config.zone }),
    })
    this.buildIndex = deps.buildIndex ?? new BuildIndexClient(config.buildIndex)
    const dataDir = resolve(config.dataDir)
    this.store = new BlobStore(join(dataDir, 'store'), { logger: this.log })
    this.journal = new ResumeJournal(join(dataDir, 'resume'), this.log)
    this.tagCache = new TagCache(join(dataDir, 'tags'), {
      maxEntries: config.tagCache.maxEntries,
      logger: this.log,
      now: deps.now,
    })
    this.bandwidth = new HostBandwidth(config.bandwidth, { registry, logger: deps.logger })
    this.engine = new TorrentEngine({
      ...config.peer, // listen address and the engine's tuning
      role: 'agent',
      ...(config.zone === undefined ? {} : { zone: config.zone }),
      peerSource: this.trackers,
      logger: deps.logger,
      registry,
      bandwidth: this.bandwidth,
    })
    this.downloads = new Downloads({
      store: this.store,
      engine: this.engine,
      trackers: this.trackers,
      logger: this.log,
      stallMs: config.stallTimeoutSeconds * 1000,
      journal: this.journal,
      minFreeBytes: config.minFreeBytes,
      onCached: (digest, size) => this.cache.added(digest, size),
    })
    this.cache = new AgentCachePolicy({
      store: this.store,
      downloads: this.downloads,
      log: this.log,
      registry,
      ttlMs: config.cache.ttlSeconds * 1000,
      highWatermark: config.cache.highWatermark,
      lowWatermark: config.cache.lowWatermark,
      sweepMs: config.cache.sweepIntervalSeconds * 1000,
      clock: deps.clock,
      now: deps.now,
    })
    this.http = new HttpServer({
      name: 'agent',
      logger: deps.logger,
      limits: config.server,
      registry,
      readiness: () => {
        if (!this.ready) throw new ShoalError('UNAVAILABLE', 'starting')
      },
    })
    // Every route of the API checks the caller's token first (lib/auth; loaded at start).
    const r = guarded(this.http.router, () => this.auth)
    r.get('/tags/:tag', (ctx) => this.resolveTag(ctx))
    const list = (ctx: RouteContext) => this.listTags(ctx)
    r.get('/list', list)
    r.get('/list/', list)
    r.get('/list/:prefix', list)
    r.get('/namespace/:ns/blobs/:digest', (ctx) => this.getBlob(ctx))
    r.get('/namespace/:ns/blobs/:digest/file', (ctx) => this.getBlobFile(ctx))
    r.get('/downloads/:digest', (ctx) => this.getProgress(ctx))
    r.delete('/blobs/:digest', (ctx) => this.deleteBlob(ctx))
    registerBandwidthRoutes(r, this.bandwidth)
    const { apiserver } = config.jobs
    this.jobs =
      apiserver === undefined
        ? undefined
        : new TaskWorker({
            hostName: config.hostName,
            jobs: { ...config.jobs, apiserver },
            agentUrl: () => this.url,
            logger: deps.logger,
            registry,
          })
  }

  get url(): string {
    return `http://${this.config.server.host}:${this.http.port}`
  }

  get peerPort(): number {
    return this.engine.port
  }

  /** Opens the store, the peer listener, then the API (lib/lifecycle contract: undone when it fails). */
  start(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal)
  }

  /** Idempotent. */
  stop(): Promise<void> {
    return this.life.stop()
  }

  private async doStart(signal: AbortSignal | undefined): Promise<void> {
    this.auth = await loadAgentAuth(this.config, this.log)
    await this.store.init()
    await this.journal.init()
    await this.tagCache.init()
    await this.engine.start(signal)
    // Indexed before downloads resume: one that finishes is added to the index, not lost by it.
    await this.cache.start()
    const reseeded = await this.downloads.reseedCache()
    // Before the API serves: a pull for a blob being resumed joins that download.
    const resumed = await this.downloads.resume()
    signal?.throwIfAborted()
    await this.auth.start()
    await this.http.start(this.config.server.port, this.config.server.host)
    // After the API: a pull task goes through it, as PullCLI's pulls do.
    await this.jobs?.start(signal)
    this.ready = true
    this.log.info({ api: this.url, peerPort: this.engine.port, reseeded, resumed }, 'agent started')
  }

  private async shutdown(): Promise<void> {
    this.ready = false
    // First: a running task's pull needs the API and the engine until it is aborted.
    await this.jobs?.stop()
    await this.http.stop()
    await this.auth?.stop()
    await this.cache.stop()
    // Downloads in flight end first (journaled, so the next start resumes them), then the engine.
    await this.downloads.stop()
    await this.engine.stop()
    await this.downloads.closeAll()
    this.bandwidth.close()
    this.log.info('agent stopped')
  }

  /** Download progress and byte counts by source, as GET /downloads/:digest reports them. */
  async progressOf(digest: Digest): Promise<DownloadProgress> {
    const progress = this.downloads.status(digest)
    if (progress) return progress
    const stat = await this.store.stat(digest)
    if (!stat) throw new ShoalError('BLOB_NOT_FOUND', `no download of ${digest} on this agent`)
    return {
      digest: digest.toString(),
      state: 'cached',
      piecesDone: 0,
      pieceCount: 0,
      size: stat.size,
      bytesFromOrigins: 0,
      bytesFromAgents: 0,
      bytesUploaded: 0,
    }
  }

  /**
   * { tag, digest, type?, desc?, source }: build-index's answer, remembered for an immutable
   * version; when build-index cannot be reached (UNAVAILABLE, TIMEOUT), the remembered answer
   * of an immutable version (source 'cache'). A tag build-index says is gone is forgotten.
   */
  async resolveInfo(tag: Tag, signal?: AbortSignal): Promise<ResolvedTag> {
    const name = tag.toString()
    const deadline = AbortSignal.timeout(this.config.resolveTimeoutSeconds * 1000)
    let info: Awaited<ReturnType<BuildIndexClient['tagInfo']>>
    try {
      info = await this.buildIndex.tagInfo(tag, signal ? AbortSignal.any([signal, deadline]) : deadline)
    } catch (err) {
      if (isShoalError(err, 'TAG_NOT_FOUND')) await this.tagCache.forget(tag)
      const cached = unreachable(err) ? await this.cachedTag(tag) : undefined
      if (!cached) throw err
      if (!this.offlineWarned.has(name)) {
        // Bounded like the cache: past it, warning again about some tags is the lesser harm.
        if (this.offlineWarned.size >= Math.max(this.config.tagCache.maxEntries, 1))
          this.offlineWarned.clear()
        this.offlineWarned.add(name)
        this.log.warn(
          { tag: name, digest: cached.digest.toString(), resolvedAt: cached.resolvedAt, err },
          'build-index unreachable: answering an immutable tag from the tag cache',
        )
      }
      return { tag: name, digest: cached.digest, ...tagMetaOf(cached), source: 'cache' }
    }
    this.offlineWarned.delete(name)
    await this.tagCache.remember(tag, info).catch((err) => {
      this.log.warn({ err, tag: name }, 'cannot remember the tag in the tag cache')
    })
    return { tag: name, digest: info.digest, ...tagMetaOf(info), source: 'build-index' }
  }

  /** A cache entry, or undefined; a cache that cannot be read is no reason to hide the real error. */
  private async cachedTag(tag: Tag) {
    return this.tagCache.get(tag).catch((err) => {
      this.log.warn({ err, tag: tag.toString() }, 'cannot read the tag cache')
      return undefined
    })
  }

  private async resolveTag({ res, params, signal }: RouteContext): Promise<void> {
    const out = await this.resolveInfo(Tag.parse(params.tag as string), signal)
    sendJson(res, 200, { ...out, digest: out.digest.toString() })
  }

  private async listTags({ res, params, query, signal }: RouteContext): Promise<void> {
    sendJson(res, 200, await this.buildIndex.list(params.prefix ?? '', { ...listQuery(query), signal }))
  }

  /**
   * The blob in the cache (downloaded through the swarm first when missing), held against
   * eviction until the returned function is called.
   */
  private async holdBlob({ req, params, signal }: RouteContext): Promise<[Digest, () => void]> {
    const digest = Digest.parse(params.digest as string)
    const ns = parseNamespace(params.ns || DEFAULT_NAMESPACE)
    // A job's bandwidth class: this download's own cap on reads from peers.
    const cap = parseIngressCap(req.headers[INGRESS_CAP_HEADER])
    for (;;) {
      await this.downloads.ensure(ns, digest, signal, cap)
      // A reader from here on: no sweep removes the blob until it is released. An eviction
      // already under way either gives up (the blob stays) or finishes (get it again).
      const done = this.cache.reading(digest)
      if (!(await this.cache.removal(digest)?.catch(() => true))) return [digest, done]
      done()
    }
  }

  private async getBlob(ctx: RouteContext): Promise<void> {
    const { res } = ctx
    const [digest, done] = await this.holdBlob(ctx)
    try {
      const stat = await this.store.stat(digest)
      if (!stat) throw new ShoalError('BLOB_NOT_FOUND', `blob not found: ${digest}`)
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': stat.size,
        'x-shoal-digest': digest.toString(),
      })
      // pipeline closes the file when the client goes away mid-stream (pipe() would leak it).
      await pipeline(this.store.createReadStream(digest), res).catch((err) => {
        if (!res.destroyed) res.destroy(err)
      })
    } finally {
      done()
    }
  }

  /**
   * Where the verified blob is in the cache, once it is there: a client on this host copies it
   * with the kernel (copy_file_range, or a reflink) instead of streaming it through HTTP. The
   * file is never written again once in the cache; a client must copy it, never link it. A
   * client that cannot open it (another user, another mount namespace, evicted meanwhile) falls
   * back to GET /namespace/:ns/blobs/:digest.
   */
  private async getBlobFile(ctx: RouteContext): Promise<void> {
    const { res } = ctx
    const [digest, done] = await this.holdBlob(ctx)
    try {
      const stat = await this.store.stat(digest)
      if (!stat) throw new ShoalError('BLOB_NOT_FOUND', `blob not found: ${digest}`)
      sendJson(res, 200, {
        digest: digest.toString(),
        size: stat.size,
        path: resolve(this.store.blobPath(digest)),
      })
    } finally {
      done()
    }
  }

  private async getProgress({ res, params }: RouteContext): Promise<void> {
    sendJson(res, 200, await this.progressOf(Digest.parse(params.digest as string)))
  }

  /**
   * Idempotent: 204 whether the blob was there or not (cached, downloading, a failed partial
   * download, or nothing). 409 BLOB_IN_USE while a local client is reading it.
   */
  private async deleteBlob({ res, params }: RouteContext): Promise<void> {
    const digest = Digest.parse(params.digest as string)
    const { partialBytes } = await this.cache.remove(digest)
    this.log.info({ digest: digest.toString(), partialBytes }, 'blob removed from agent cache')
    sendEmpty(res, 204)
  }
}

export interface ResolvedTag {
  tag: string
  digest: Digest
  type?: TagType
  desc?: string
  mode?: number
  mtimeMs?: number
  /** build-index: answered now; cache: build-index unreachable, answered from the tag cache. */
  source: 'build-index' | 'cache'
}

/** Build-index did not answer (down, unreachable, too slow), as opposed to answering "no". */
function unreachable(err: unknown): boolean {
  return isShoalError(err, 'UNAVAILABLE') || isShoalError(err, 'TIMEOUT')
}

export async function startAgent(config: AgentConfig, deps: AgentDeps): Promise<AgentServer> {
  const agent = new AgentServer(config, deps)
  await agent.start()
  return agent
}

/**
 * The API's tokens. Beyond loopback they are required (start fails naming the keys) and reads
 * from other hosts need one too: a pull hands out whole blobs and names paths of this host.
 */
async function loadAgentAuth(config: AgentConfig, log: Logger): Promise<TokenAuth> {
  const { host } = config.server
  const local = host === 'localhost' || isLoopback(host)
  if (!local && config.auth.tokens.length === 0)
    throw new ShoalError(
      'CONFIG_INVALID',
      `the agent API is bound to ${host}, beyond loopback, but no token is configured: set auth.tokens in the agent config (token files), or bind server.host to 127.0.0.1`,
    )
  return TokenAuth.load(config.auth, {
    configKey: 'auth.tokens in the agent config',
    remoteReadsNeedToken: !local,
    onReload: (name, file) => log.info({ token: name, file }, 'token file read again'),
    onReloadError: (name, file, reason) =>
      log.error({ token: name, file, reason }, 'token file changed but cannot be used; the old token stays'),
  })
}
