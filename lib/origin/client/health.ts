/**
 * Active health checks of the origins of a ring, the one implementation both sides use: an
 * origin (which owners GET /blobs/:digest/locations may name: lib/origin/server/ring.ts) and
 * OriginCluster (which owners proxy, tracker and build-index try first: cluster.ts).
 *
 * Every member's GET /health is polled every `intervalMs`, each probe cut off after `timeoutMs`.
 * A member starts healthy (a cluster coming up is not declared dead before anyone looked), turns
 * unhealthy after `failThreshold` consecutive failed probes and healthy again after
 * `passThreshold` consecutive passes; one result the other way resets the run. Each transition
 * is logged and counted; a gauge per member tells its state (1 healthy, 0 unhealthy).
 */
import { type Clock, Repeat, systemClock } from '../../bandwidth/clock.js'
import { z } from '../../config/index.js'
import { ShoalError, toShoalError } from '../../errors/index.js'
import { HttpClient } from '../../http/index.js'
import type { Logger } from '../../log/index.js'
import { counter, gauge, type Registry } from '../../metrics/index.js'

/** The `healthCheck` section (origin: hashring.healthCheck; proxy, tracker, build-index: originHealth). */
export const HealthCheckConfig = z
  .strictObject({
    /** Time between two probes of a member, ms. */
    intervalMs: z.number().int().min(50).max(600_000).default(5_000),
    /** A probe not answered within this is a failure, ms. */
    timeoutMs: z.number().int().min(10).max(60_000).default(2_000),
    /** Consecutive failures that make a healthy member unhealthy. */
    failThreshold: z.number().int().min(1).max(100).default(3),
    /** Consecutive passes that make an unhealthy member healthy again. */
    passThreshold: z.number().int().min(1).max(100).default(2),
  })
  .prefault({})

export type HealthCheckSettings = z.infer<typeof HealthCheckConfig>

/** One probe of one member: resolves when it is fine, rejects (or is aborted) when not. */
export type Probe = (address: string, signal: AbortSignal) => Promise<void>

export interface HealthCheckerOptions extends HealthCheckSettings {
  logger: Logger
  registry?: Registry
  /** Timers and time (lib/bandwidth Clock); ManualClock in tests. */
  clock?: Clock
  /** Default: GET http://<address>/health answered 2xx. */
  probe?: Probe
  /** A member that is never probed and always healthy: the origin doing the checking. */
  self?: string
}

export interface MemberHealth {
  address: string
  healthy: boolean
  /** Consecutive failed probes (0 after a pass). */
  failures: number
  /** Consecutive passed probes (0 after a failure). */
  passes: number
  lastError?: string
}

interface State {
  healthy: boolean
  failures: number
  passes: number
  lastError?: string
}

/** host:port, however the address was written (scheme and trailing slashes dropped). */
export function memberKey(address: string): string {
  return address
    .trim()
    .replace(/^https?:\/\//, '')
    .replace(/\/+$/, '')
}

export class HealthChecker {
  private readonly members = new Map<string, State>()
  private readonly clock: Clock
  private readonly probe: Probe
  private readonly self: string | undefined
  private readonly log: Logger
  private readonly gauge: ReturnType<typeof gauge> | undefined
  private readonly transitions: ReturnType<typeof counter> | undefined
  private readonly polling: Repeat
  private inFlight: Promise<void> | undefined

  constructor(private readonly opts: HealthCheckerOptions) {
    this.clock = opts.clock ?? systemClock
    this.polling = new Repeat(this.clock, opts.intervalMs, () => this.round())
    this.probe = opts.probe ?? httpProbe(opts.timeoutMs)
    this.self = opts.self === undefined ? undefined : memberKey(opts.self)
    this.log = opts.logger
    if (opts.registry) {
      this.gauge = gauge(
        opts.registry,
        'shoal_origin_member_healthy',
        'Origins of the ring as health checks see them: 1 healthy, 0 unhealthy',
        ['member'],
      )
      this.transitions = counter(
        opts.registry,
        'shoal_origin_member_transitions_total',
        'Origin health transitions, by member and the state entered',
        ['member', 'to'],
      )
    }
  }

  /** Replaces the set of members: new ones start healthy, gone ones are forgotten. */
  setMembers(addresses: Iterable<string>): void {
    const wanted = new Set([...addresses].map(memberKey))
    for (const key of [...this.members.keys()]) if (!wanted.has(key)) this.remove(key)
    for (const key of wanted) this.add(key)
  }

  /** Adds a member (healthy) unless it is known already. */
  add(address: string): void {
    const key = memberKey(address)
    if (this.members.has(key)) return
    this.members.set(key, { healthy: true, failures: 0, passes: 0 })
    this.gauge?.set({ member: key }, 1)
  }

  /** Forgets a member: no more probes, no gauge. */
  remove(address: string): void {
    const key = memberKey(address)
    if (this.members.delete(key)) this.gauge?.remove({ member: key })
  }

  /** An unknown member, and the checking origin itself, count as healthy. */
  isHealthy(address: string): boolean {
    return this.members.get(memberKey(address))?.healthy ?? true
  }

  /** The members, in the order they were added, and what the checks say of each. */
  snapshot(): MemberHealth[] {
    return [...this.members].map(([address, s]) => ({ address, ...s }))
  }

  /**
   * Applies one probe result to a member: the state machine. Returns true when the member
   * changed state.
   */
  record(address: string, ok: boolean, error?: string): boolean {
    const key = memberKey(address)
    const s = this.members.get(key)
    if (!s) return false
    if (ok) {
      s.failures = 0
      s.passes++
      if (s.healthy || s.passes < this.opts.passThreshold) return false
      s.healthy = true
      this.log.info(
        { member: key, passes: s.passes, lastError: s.lastError },
        'origin is healthy again: it passed its health checks',
      )
    } else {
      s.passes = 0
      s.failures++
      s.lastError = error
      if (!s.healthy || s.failures < this.opts.failThreshold) return false
      s.healthy = false
      this.log.warn(
        { member: key, failures: s.failures, err: error },
        'origin is unhealthy: it failed its health checks; it is passed over until it recovers',
      )
    }
    this.gauge?.set({ member: key }, s.healthy ? 1 : 0)
    this.transitions?.inc({ member: key, to: s.healthy ? 'healthy' : 'unhealthy' })
    return true
  }

  /** Probes every member now (the checking origin excepted); resolves once every probe ended. */
  round(): Promise<void> {
    this.inFlight ??= this.probeAll().finally(() => {
      this.inFlight = undefined
    })
    return this.inFlight
  }

  /** Resolves once the round in flight, if any, has ended (tests). */
  async settled(): Promise<void> {
    await this.inFlight
  }

  /** Polls every intervalMs (the first round one interval from now) until stop(). */
  start(): void {
    this.polling.start()
  }

  stop(): void {
    this.polling.stop()
  }

  private async probeAll(): Promise<void> {
    const keys = [...this.members.keys()].filter((k) => k !== this.self)
    const results = await Promise.all(keys.map((k) => this.probeOne(k)))
    keys.forEach((k, i) => {
      const error = results[i]
      this.record(k, error === undefined, error)
    })
  }

  /** One probe under the timeout: undefined when it passed, else why it failed. */
  private async probeOne(address: string): Promise<string | undefined> {
    const ac = new AbortController()
    let timedOut: () => void = () => undefined
    const deadline = new Promise<never>((_, reject) => {
      timedOut = () => {
        const err = new ShoalError(
          'TIMEOUT',
          `origin ${address} did not answer its health check within ${this.opts.timeoutMs} ms`,
        )
        ac.abort(err)
        reject(err)
      }
    })
    const timer = this.clock.setTimer(() => timedOut(), this.opts.timeoutMs)
    try {
      await Promise.race([this.probe(address, ac.signal), deadline])
      return undefined
    } catch (err) {
      return toShoalError(err, 'UNAVAILABLE').message
    } finally {
      this.clock.clearTimer(timer)
      deadline.catch(() => undefined)
    }
  }
}

/** GET /health on the member's HTTP API, answered 2xx. */
export function httpProbe(timeoutMs: number): Probe {
  const clients = new Map<string, HttpClient>()
  return async (address, signal) => {
    let client = clients.get(address)
    if (!client) {
      client = new HttpClient(address, { name: 'origin', timeoutMs })
      clients.set(address, client)
    }
    await client.status('GET', '/health', { signal, timeoutMs })
  }
}
