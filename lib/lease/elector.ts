/**
 * Leader election on a Lease through the resource API, and a service that runs only while its
 * process leads (`LeaderElected`): two herds on one shared store must not both run the job
 * controller.
 *
 * Each attempt reads the Lease and writes it back conditional on the resourceVersion read (a
 * CAS through the store: of two contenders one gets CONFLICT). A Lease held by another is
 * taken only once its resourceVersion has stayed the same for its leaseDurationSeconds, timed
 * by this process's monotonic clock from when it first saw that version, so hosts need not
 * agree on the time. The leader renews every `renewEveryMs`; when it cannot renew for
 * `renewDeadlineMs` (less than the duration, so it stops before anyone may take over) or sees
 * another holder, it steps down at once and its service is stopped. stop() releases the Lease
 * (holder '') so a standby takes over at its next attempt instead of waiting out the duration.
 */
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { ResourceClient } from '../apiserver/client/index.js'
import { isShoalError, toShoalError } from '../errors/index.js'
import { Lifecycle, type Service } from '../lifecycle/index.js'
import type { Logger } from '../log/index.js'
import type { Lease, LeaseSpecT } from './kind.js'

export interface LeaderElectionOptions {
  /** A client of the Lease kind (LeaseKind) on the resource API. */
  client: ResourceClient<LeaseSpecT, never>
  namespace: string
  name: string
  /** Who this process is in the Lease; default host-pid-random. */
  identity?: string
  /** Default 15. */
  leaseDurationSeconds?: number
  /** Default a third of the duration. */
  renewEveryMs?: number
  /** A leader that could not renew this long steps down; default two thirds of the duration. */
  renewDeadlineMs?: number
  /** How often a standby tries; default renewEveryMs. */
  retryEveryMs?: number
  logger: Logger
  now?: () => number
}

type Attempt = 'held' | 'other' | 'error'

export function defaultIdentity(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`
}

/** Runs the service `make()` builds while this process holds the Lease; a new one each time. */
export class LeaderElected<S extends Service> implements Service {
  readonly identity: string
  private readonly o: Required<Omit<LeaderElectionOptions, 'identity'>>
  private readonly log: Logger
  private current: S | undefined
  private leading = false
  private lastRenew = 0
  /** The Lease's resourceVersion as last seen, and when (this process's clock). */
  private observed: { rv: string; at: number } | undefined
  private leaseRv: string | undefined
  private loop: Promise<void> | undefined
  private readonly stopping = new AbortController()
  private wake: (() => void) | undefined
  private readonly life = new Lifecycle('leader election', {
    start: () => this.doStart(),
    stop: () => this.doStop(),
  })

  constructor(
    opts: LeaderElectionOptions,
    private readonly make: () => S,
  ) {
    const seconds = opts.leaseDurationSeconds ?? 15
    const renewEveryMs = opts.renewEveryMs ?? (seconds * 1000) / 3
    this.identity = opts.identity ?? defaultIdentity()
    this.o = {
      client: opts.client,
      namespace: opts.namespace,
      name: opts.name,
      leaseDurationSeconds: seconds,
      renewEveryMs,
      renewDeadlineMs: opts.renewDeadlineMs ?? (seconds * 2000) / 3,
      retryEveryMs: opts.retryEveryMs ?? renewEveryMs,
      logger: opts.logger,
      now: opts.now ?? (() => performance.now()),
    }
    this.log = opts.logger.child({ component: 'leader-election', lease: opts.name, identity: this.identity })
  }

  /** The service while this process leads, else undefined. */
  get service(): S | undefined {
    return this.current
  }

  get isLeader(): boolean {
    return this.leading
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal)
  }

  stop(): Promise<void> {
    return this.life.stop()
  }

  /** One attempt before start() returns: a lone herd runs its controller from the start. */
  private async doStart(): Promise<void> {
    await this.step()
    this.loop = this.run()
  }

  private async doStop(): Promise<void> {
    this.stopping.abort()
    this.wake?.()
    await this.loop
    if (this.leading) {
      await this.stepDown('stopping')
      await this.release()
    }
  }

  private async run(): Promise<void> {
    while (!this.stopping.signal.aborted) {
      await this.sleep(this.leading ? this.o.renewEveryMs : this.o.retryEveryMs)
      if (this.stopping.signal.aborted) break
      await this.step()
    }
  }

  private async step(): Promise<void> {
    const r = await this.attempt()
    const now = this.o.now()
    if (r === 'held') {
      this.lastRenew = now
      if (!this.leading) await this.becomeLeader()
    } else if (this.leading) {
      if (r === 'other') await this.stepDown('another process holds the lease')
      else if (now - this.lastRenew >= this.o.renewDeadlineMs)
        await this.stepDown(`could not renew the lease for ${Math.round(now - this.lastRenew)} ms`)
    }
  }

  private async becomeLeader(): Promise<void> {
    this.leading = true
    this.log.info('acquired the lease: starting')
    const s = this.make()
    this.current = s
    try {
      await s.start(this.stopping.signal)
    } catch (err) {
      this.log.error(
        { err: toShoalError(err).message },
        'the leader’s service failed to start; giving the lease up',
      )
      this.current = undefined
      this.leading = false
      await this.release()
    }
  }

  private async stepDown(why: string): Promise<void> {
    this.leading = false
    const s = this.current
    this.current = undefined
    this.log.warn({ why }, 'lost the lease: stopping')
    await s?.stop().catch((err) => this.log.error({ err: toShoalError(err).message }, 'stop failed'))
  }

  /** Reads the Lease and writes it back as ours when it is free, expired or ours already. */
  private async attempt(): Promise<Attempt> {
    const { client, namespace, name } = this.o
    let cur: Lease | undefined
    try {
      cur = (await client.get(namespace, name)) as Lease
    } catch (err) {
      if (!isShoalError(err, 'NOT_FOUND')) return this.failed(err)
    }
    const now = this.o.now()
    const stamp = new Date().toISOString()
    const spec = (prev?: LeaseSpecT): LeaseSpecT => ({
      holderIdentity: this.identity,
      leaseDurationSeconds: this.o.leaseDurationSeconds,
      acquireTime: prev?.holderIdentity === this.identity ? (prev.acquireTime ?? stamp) : stamp,
      renewTime: stamp,
      leaseTransitions:
        (prev?.leaseTransitions ?? 0) + (prev && prev.holderIdentity !== this.identity ? 1 : 0),
    })
    try {
      if (cur === undefined) {
        const made = await client.create(namespace, { metadata: { name }, spec: spec() })
        this.seen(made.metadata.resourceVersion, now)
        return 'held'
      }
      this.seen(cur.metadata.resourceVersion, now)
      const holder = cur.spec.holderIdentity
      const expired = now - (this.observed?.at ?? now) >= cur.spec.leaseDurationSeconds * 1000
      if (holder !== '' && holder !== this.identity && !expired) return 'other'
      const written = await client.update(namespace, {
        metadata: { name, resourceVersion: cur.metadata.resourceVersion },
        spec: spec(cur.spec),
      })
      this.seen(written.metadata.resourceVersion, now)
      if (holder !== this.identity)
        this.log.info({ previous: holder || undefined, expired }, 'took the lease over')
      return 'held'
    } catch (err) {
      if (isShoalError(err, 'CONFLICT') || isShoalError(err, 'ALREADY_EXISTS')) return 'other'
      return this.failed(err)
    }
  }

  private seen(rv: string, now: number): void {
    this.leaseRv = rv
    if (this.observed?.rv !== rv) this.observed = { rv, at: now }
  }

  private failed(err: unknown): Attempt {
    this.log.warn({ err: toShoalError(err).message }, 'cannot reach the lease')
    return 'error'
  }

  /** Gives the Lease up (holder ''), so a standby need not wait out the duration. */
  private async release(): Promise<void> {
    const { client, namespace, name } = this.o
    if (this.leaseRv === undefined) return
    try {
      const cur = (await client.get(namespace, name)) as Lease
      if (cur.spec.holderIdentity !== this.identity) return
      await client.update(namespace, {
        metadata: { name, resourceVersion: cur.metadata.resourceVersion },
        spec: { ...cur.spec, holderIdentity: '', renewTime: new Date().toISOString() },
      })
      this.log.info('released the lease')
    } catch (err) {
      // It expires by itself; a standby takes over after leaseDurationSeconds.
      this.log.warn({ err: toShoalError(err).message }, 'cannot release the lease; it expires by itself')
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.wake = done
    })
  }
}
