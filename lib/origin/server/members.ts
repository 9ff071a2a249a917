/**
 * Who is in the ring when it is found through DNS (`hashring.dns`): a name that resolves to one
 * address per origin (a headless service, a round-robin record), every one with the same HTTP
 * port. The name is resolved at start and every `refreshSeconds`; when the set of addresses
 * changes the ring is rebuilt (ring.ts) and the change is logged. A failed resolution keeps
 * the last set: a DNS outage must not empty the ring.
 */
import { lookup } from 'node:dns/promises'
import { type Clock, Repeat, systemClock } from '../../bandwidth/clock.js'
import { z } from '../../config/index.js'
import { ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'

export const DnsMembersConfig = z.strictObject({
  /** A name resolving to every origin's address (A and AAAA records, /etc/hosts). */
  name: z.string().min(1),
  /** The origins' HTTP port (every address gets it). */
  port: z.number().int().min(1).max(65535),
  /** How often the name is resolved again, seconds. */
  refreshSeconds: z.number().int().min(1).max(86_400).default(30),
})

export type DnsMembersSettings = z.infer<typeof DnsMembersConfig>

/** Resolves a name to IP addresses (IPv4 and IPv6); rejects when it does not resolve. */
export type Resolve = (name: string) => Promise<string[]>

/** The system resolver, as every other program on the host resolves: getaddrinfo (/etc/hosts too). */
export const systemResolve: Resolve = async (name) =>
  (await lookup(name, { all: true })).map((a) => a.address)

/** `ip:port`, IPv6 in brackets. */
export function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`
}

export interface MembershipChange {
  members: string[]
  added: string[]
  removed: string[]
}

export class DnsMembers {
  private current: string[] = []
  private readonly refreshing: Repeat
  private running = false
  private readonly resolve: Resolve

  constructor(
    private readonly settings: DnsMembersSettings,
    private readonly opts: {
      logger: Logger
      onChange: (change: MembershipChange) => void
      resolve?: Resolve
      clock?: Clock
    },
  ) {
    this.resolve = opts.resolve ?? systemResolve
    this.refreshing = new Repeat(opts.clock ?? systemClock, settings.refreshSeconds * 1000, () =>
      this.refresh(),
    )
  }

  /** The addresses (ip:port, sorted) of the last successful resolution; empty before one. */
  get members(): readonly string[] {
    return this.current
  }

  /**
   * Resolves the name once; calls onChange when the set differs from the last one. False when
   * the name did not resolve (logged; the last set stays).
   */
  async refresh(): Promise<boolean> {
    const { name, port } = this.settings
    let addresses: string[]
    try {
      addresses = await this.resolve(name)
      if (addresses.length === 0) throw new ShoalError('UNAVAILABLE', `${name} resolved to no address`)
    } catch (err) {
      this.opts.logger.warn(
        { name, err: toShoalError(err, 'UNAVAILABLE').message, members: this.current },
        'cannot resolve hashring.dns.name; the ring keeps its last members',
      )
      return false
    }
    const next = [...new Set(addresses.map((a) => hostPort(a, port)))].sort()
    const before = new Set(this.current)
    const added = next.filter((m) => !before.has(m))
    const removed = this.current.filter((m) => !next.includes(m))
    if (added.length === 0 && removed.length === 0) return true
    this.current = next
    this.opts.logger.info({ name, added, removed, members: next }, 'hash ring membership changed (DNS)')
    this.opts.onChange({ members: next, added, removed })
    return true
  }

  /** Resolves now, then every refreshSeconds until stop(). */
  async start(): Promise<void> {
    if (this.running) return
    this.running = true
    await this.refresh()
    // stop() during the first resolution wins.
    if (this.running) this.refreshing.start()
  }

  stop(): void {
    this.running = false
    this.refreshing.stop()
  }
}
