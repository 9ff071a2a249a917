/**
 * Replication between the owners of a blob, origin to origin (docs/architecture.md, "The
 * origin ring"). A push reaches one origin; once its commit is acknowledged that origin asks
 * every other owner of the digest to hold the blob (POST /blobs/:digest/replicate), and each
 * copies it from the committing origin, verified by sha256, falling back to the backend
 * (backend-copy.ts). Only the committing origin writes the blob back: a replica is a cache
 * copy like one fetched from the backend, evicted by the same policy (the source holds the
 * write-back mark until the backend has it). repair.ts uses the same ensure() after a
 * membership change.
 *
 * Receiving: only from a member of this origin's ring, and only for a digest this origin owns
 * (NOT_RING_MEMBER, NOT_OWNER), so the route cannot make an origin fetch from anywhere or fill
 * its disk with blobs it does not own.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from '../../config/index.js'
import type { Digest } from '../../core/index.js'
import { isAbortError, ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { type Counter, counter, type Registry } from '../../metrics/index.js'
import type { BlobStore } from '../../store/index.js'
import { memberKey } from '../client/health.js'
import { OriginClient } from '../client/index.js'
import { checkNamespace } from './keys.js'
import type { ReplicaState } from './service.js'
import type { Work } from './work.js'

export const ReplicationConfig = z
  .strictObject({
    /** Attempts to place one replica on one owner before it is left to the next repair pass. */
    attempts: z.number().int().min(1).max(100).default(6),
    /** Retries wait 0.5 s, doubling (with jitter) up to this. Seconds. */
    maxBackoffSeconds: z.number().int().min(1).max(3_600).default(30),
  })
  .prefault({})

/** POST /blobs/:digest/replicate: the namespace (for the backend fallback) and the origin to copy from. */
export const ReplicateRequest = z.strictObject({
  namespace: z.string().min(1).max(255),
  from: z.string().min(1).max(300),
})

/** The largest replicate body read (it is two short strings). */
export const MAX_REPLICATE_BODY = 4096

/** This origin's view of the ring (ring.ts), as replication needs it. */
export interface RingView {
  /** This origin's address in the ring. */
  self(): string
  members(): readonly string[]
  /** The digest's owners now (healthy ones, primary first). */
  owners(digest: Digest): string[]
  isOwner(digest: Digest, member: string): boolean
}

/** How placing a replica ended: the owner had it, copied it, or could not be made to. */
export type ReplicaResult = 'present' | 'copied' | 'failed'

/**
 * An owner asked for a replica answers once it has copied the blob or after this long
 * (`fetching`: the sender polls), well within the sender's answer timeout.
 */
const ACCEPT_WAIT_MS = 5_000
const BASE_BACKOFF_MS = 500
/** Polls of a copying owner start this far apart and double up to POLL_MAX_MS. */
const POLL_MIN_MS = 50
const POLL_MAX_MS = 2_000
/** A copy is given this long plus a second per SLOW_COPY_BYTES before the attempt is failed. */
const COPY_GRACE_MS = 60_000
const SLOW_COPY_BYTES = 5 << 20

export class Replication {
  private readonly results: Counter
  /** Replicas being placed, by `owner hex`: a commit and a repair of one blob share the work. */
  private readonly placing = new Map<string, Promise<ReplicaResult>>()
  private readonly namespaceDir: string

  constructor(
    private readonly opts: {
      ring: RingView
      store: BlobStore
      /** Copies the blob from `from` (else the backend) in the background unless it is cached. */
      replicaFrom: (ns: string, digest: Digest, from: string, waitMs: number) => Promise<ReplicaState>
      work: Work
      log: Logger
      registry: Registry
      attempts: number
      maxBackoffMs: number
    },
  ) {
    this.namespaceDir = join(opts.store.root, 'namespaces')
    this.results = counter(
      opts.registry,
      'shoal_origin_replications_total',
      'Replicas this origin placed on other owners, by trigger (commit, repair) and result (present, copied, failed)',
      ['trigger', 'result'],
    )
  }

  /** Receiving end of POST /blobs/:digest/replicate. */
  async accept(digest: Digest, req: z.infer<typeof ReplicateRequest>): Promise<ReplicaState> {
    const ns = checkNamespace(req.namespace)
    const { ring } = this.opts
    const from = memberKey(req.from)
    const self = memberKey(ring.self())
    if (from === self)
      throw new ShoalError('BAD_REQUEST', `an origin does not replicate from itself (${from})`)
    if (!ring.members().some((m) => memberKey(m) === from)) {
      throw new ShoalError('NOT_RING_MEMBER', `${from} is not a member of this origin's hash ring`)
    }
    if (!ring.isOwner(digest, self)) {
      throw new ShoalError(
        'NOT_OWNER',
        `${self} does not own ${digest}; its owners are ${ring.owners(digest)}`,
      )
    }
    const state = await this.opts.replicaFrom(ns, digest, from, ACCEPT_WAIT_MS)
    if (state !== 'cached') await this.remember(ns, digest)
    return state
  }

  /** After a commit (acknowledged already): every other owner gets the blob, in the background. */
  committed(ns: string, digest: Digest): void {
    void this.remember(ns, digest)
    let owners: string[]
    try {
      owners = this.opts.ring.owners(digest)
    } catch (err) {
      // Not started yet (no ring): the first repair pass places it.
      this.opts.log.warn({ err, digest: digest.toString() }, 'committed blob not replicated')
      return
    }
    const self = memberKey(this.opts.ring.self())
    for (const owner of owners) {
      if (memberKey(owner) !== self) void this.opts.work.track(this.ensure(owner, ns, digest, 'commit'))
    }
  }

  /**
   * Makes `owner` hold the blob (cached by this origin): asks it, then waits for its copy.
   * Retried with capped backoff up to `attempts` times; never rejects (the result is counted
   * and logged).
   */
  ensure(owner: string, ns: string, digest: Digest, trigger: 'commit' | 'repair'): Promise<ReplicaResult> {
    const key = `${memberKey(owner)} ${digest.hex}`
    let p = this.placing.get(key)
    if (!p) {
      p = this.place(owner, ns, digest, trigger).finally(() => this.placing.delete(key))
      this.placing.set(key, p)
    }
    return p
  }

  /** The namespace a cached blob was pushed to (default when not recorded). */
  async namespaceOf(digest: Digest): Promise<string> {
    const raw = await readFile(join(this.namespaceDir, digest.hex), 'utf8').catch(() => 'default')
    try {
      return checkNamespace(raw.trim())
    } catch {
      return 'default'
    }
  }

  /**
   * Records a non-default namespace beside the cache (the cache is shared by namespaces), so a
   * repair after a restart asks the owners for the right backend fallback. Not synced: a lost
   * record only means the default namespace's backend is the fallback.
   */
  private async remember(ns: string, digest: Digest): Promise<void> {
    if (ns === 'default') return
    try {
      await mkdir(this.namespaceDir, { recursive: true })
      await writeFile(join(this.namespaceDir, digest.hex), ns)
    } catch (err) {
      this.opts.log.debug({ err, digest: digest.toString() }, "cannot record a blob's namespace")
    }
  }

  private async place(owner: string, ns: string, digest: Digest, trigger: string): Promise<ReplicaResult> {
    const { log, work, attempts, maxBackoffMs } = this.opts
    const signal = work.signal
    const started = Date.now()
    let last: ShoalError | undefined
    for (let attempt = 1; attempt <= attempts && !signal.aborted; attempt++) {
      try {
        const result = await this.once(owner, ns, digest, signal)
        this.results.inc({ trigger, result })
        const ms = Date.now() - started
        log.info({ owner, ns, digest: digest.toString(), trigger, result, attempt, ms }, 'replica placed')
        return result
      } catch (err) {
        if (isAbortError(err) || signal.aborted) break
        last = toShoalError(err, 'UNAVAILABLE')
        log.debug(
          { owner, digest: digest.toString(), attempt, code: last.code, err: last.message },
          'replica not placed yet',
        )
        if (attempt === attempts) break
        const backoff = Math.min(maxBackoffMs, BASE_BACKOFF_MS * 2 ** (attempt - 1))
        await sleep(backoff * (0.5 + Math.random() / 2), signal)
      }
    }
    if (signal.aborted) return 'failed'
    this.results.inc({ trigger, result: 'failed' })
    log.warn(
      { owner, ns, digest: digest.toString(), trigger, attempts, code: last?.code, err: last?.message },
      'cannot place a replica on an owner; the next repair pass tries again',
    )
    return 'failed'
  }

  /** One attempt: ask the owner, then poll it (HEAD) until its copy is in its cache. */
  private async once(owner: string, ns: string, digest: Digest, signal: AbortSignal): Promise<ReplicaResult> {
    const client = new OriginClient(owner, { timeoutMs: 10_000 })
    const self = this.opts.ring.self()
    const { state } = await client.replicate(digest, { namespace: ns, from: self }, signal)
    if (state === 'cached') return 'present'
    if (state === 'copied') return 'copied'
    const size = (await this.opts.store.stat(digest))?.size ?? 0
    const deadline = Date.now() + COPY_GRACE_MS + Math.ceil(size / SLOW_COPY_BYTES) * 1000
    for (let wait = POLL_MIN_MS; ; wait = Math.min(POLL_MAX_MS, wait * 2)) {
      await sleep(wait, signal)
      const stat = await client.stat(ns, digest, signal)
      if (stat && !stat.pending) return 'copied'
      if (!stat)
        throw new ShoalError('BLOB_NOT_FOUND', `${owner} lost its copy of ${digest} while fetching it`)
      if (Date.now() > deadline) {
        throw new ShoalError('TIMEOUT', `${owner} did not finish copying ${digest} (${size} bytes) in time`)
      }
    }
  }
}

/** Resolves after `ms`, or rejects (AbortError) once `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal.reason)
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    timer.unref()
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
