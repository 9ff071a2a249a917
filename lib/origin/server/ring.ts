/**
 * Who owns a digest: the one place it is computed. Origins answer it (GET
 * /blobs/:digest/locations) from their ring; every other daemon asks them through
 * lib/origin/client OriginCluster rather than keeping a ring of its own, so a cluster whose
 * membership changes needs only its origins' config (or DNS) changed.
 *
 * Members come from `hashring.nodes` (static) or `hashring.dns` (members.ts, re-resolved; the
 * ring is rebuilt when the set changes). Every member but this one is health-checked
 * (lib/origin/client/health.ts); the owners named are the first `replicas` healthy members in
 * ring order from the digest, so an unhealthy owner is passed over for the next one along the
 * ring, and named again once it passes its checks.
 */
import type { Clock } from '../../bandwidth/clock.js'
import type { Digest } from '../../core/index.js'
import { HashRing } from '../../hashring/index.js'
import type { Logger } from '../../log/index.js'
import type { Registry } from '../../metrics/index.js'
import { HealthChecker, type HealthCheckSettings, memberKey, type Probe } from '../client/health.js'
import { DnsMembers, type DnsMembersSettings, type Resolve } from './members.js'

export interface RingSettings {
  /** Every origin's HTTP address, this one (`self`) included; empty (and no dns) means just this one. */
  nodes: readonly string[]
  dns?: DnsMembersSettings
  replicas: number
  healthCheck: HealthCheckSettings
}

export interface OriginRingDeps {
  logger: Logger
  registry?: Registry
  clock?: Clock
  /** Health probe of a member (default GET /health); tests. */
  probe?: Probe
  /** DNS resolution of hashring.dns.name (default the system resolver); tests. */
  resolve?: Resolve
}

export class OriginRing {
  readonly health: HealthChecker
  private ring: HashRing
  private readonly dns: DnsMembers | undefined
  private readonly log: Logger
  private readonly self: string

  constructor(
    private readonly settings: RingSettings,
    self: string,
    deps: OriginRingDeps,
  ) {
    this.log = deps.logger
    this.self = memberKey(self)
    this.health = new HealthChecker({
      ...settings.healthCheck,
      logger: deps.logger,
      registry: deps.registry,
      clock: deps.clock,
      probe: deps.probe,
      self: this.self,
    })
    this.ring = this.build(settings.dns ? [] : settings.nodes)
    if (settings.dns) {
      this.dns = new DnsMembers(settings.dns, {
        logger: deps.logger,
        clock: deps.clock,
        resolve: deps.resolve,
        onChange: ({ members }) => {
          this.ring = this.build(members)
        },
      })
    }
  }

  /** Resolves the DNS name (when configured; a failure leaves a ring of this origin alone) and starts the health checks. */
  async start(): Promise<void> {
    await this.dns?.start()
    this.health.start()
  }

  stop(): void {
    this.dns?.stop()
    this.health.stop()
  }

  /** The members of the ring (host:port), as configured or last resolved. */
  get nodes(): readonly string[] {
    return this.ring.nodes
  }

  /**
   * The digest's owners, primary first: the first `replicas` healthy members in ring order.
   * Fewer when fewer members are healthy; the plain ring owners when none is (this origin,
   * always healthy to itself, is then not in its ring).
   */
  owners(digest: Digest): string[] {
    const replicas = this.settings.replicas
    const first = this.ring.owners(digest, replicas)
    if (first.every((m) => this.health.isHealthy(m))) return first
    const healthy = this.ring
      .owners(digest, this.ring.nodes.length)
      .filter((m) => this.health.isHealthy(m))
      .slice(0, replicas)
    return healthy.length > 0 ? healthy : first
  }

  /**
   * Whether `member` owns the digest: named by owners(), or one of its first `replicas` ring
   * owners (origins' views of each other's health differ for a few checks; replication.ts).
   */
  isOwner(digest: Digest, member: string): boolean {
    const key = memberKey(member)
    const named = (list: string[]) => list.some((m) => memberKey(m) === key)
    return named(this.owners(digest)) || named(this.ring.owners(digest, this.settings.replicas))
  }

  private build(nodes: readonly string[]): HashRing {
    const ring = new HashRing(nodes.length > 0 ? nodes : [this.self])
    this.health.setMembers(ring.nodes)
    if (!ring.nodes.some((n) => memberKey(n) === this.self)) {
      this.log.warn(
        { self: this.self, nodes: ring.nodes },
        'this origin is not in its own hash ring: set "self" to its address in hashring.nodes (or as DNS resolves it)',
      )
    }
    return ring
  }
}
