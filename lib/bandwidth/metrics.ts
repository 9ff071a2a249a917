/**
 * Prometheus view of the limiters. Nothing is updated on the hot path: the limiters keep plain
 * numbers, and these metrics read them when the registry is scraped. Several hosts on one
 * registry (tests, `shoal herd`) add up; a closed limiter's totals are kept, so counters never
 * go backwards.
 */
import { Counter, Gauge, type Registry } from '../metrics/index.js'
import type { Direction, Limiter } from './limiter.js'

interface Sources {
  live: Set<Limiter>
  /** Totals of limiters that were closed, per direction. */
  retiredBytes: Record<Direction, number>
  retiredThrottled: Record<Direction, number>
}

const byRegistry = new WeakMap<Registry, Sources>()
const DIRECTIONS: readonly Direction[] = ['egress', 'ingress']

/** Reports `limiter` on `registry` until the returned function is called. */
export function reportLimiter(registry: Registry, limiter: Limiter): () => void {
  let s = byRegistry.get(registry)
  if (s === undefined) {
    s = {
      live: new Set(),
      retiredBytes: { egress: 0, ingress: 0 },
      retiredThrottled: { egress: 0, ingress: 0 },
    }
    byRegistry.set(registry, s)
    createMetrics(registry, s)
  }
  const sources = s
  sources.live.add(limiter)
  return () => {
    if (!sources.live.delete(limiter)) return
    sources.retiredBytes[limiter.direction] += limiter.bytes
    sources.retiredThrottled[limiter.direction] += limiter.throttledSeconds
  }
}

function sum(s: Sources, direction: Direction, pick: (l: Limiter) => number): number {
  let total = 0
  for (const l of s.live) if (l.direction === direction) total += pick(l)
  return total
}

function createMetrics(registry: Registry, s: Sources): void {
  const registers = [registry]
  const labelNames = ['direction']
  new Counter({
    name: 'shoal_bandwidth_bytes_total',
    help: 'Bytes through the host bandwidth limiter: granted to send (egress), read from peers (ingress)',
    labelNames,
    registers,
    collect() {
      this.reset()
      for (const d of DIRECTIONS) this.inc({ direction: d }, s.retiredBytes[d] + sum(s, d, (l) => l.bytes))
    },
  })
  new Counter({
    name: 'shoal_bandwidth_throttled_seconds_total',
    help: 'Time during which at least one transfer waited for the bandwidth cap',
    labelNames,
    registers,
    collect() {
      this.reset()
      for (const d of DIRECTIONS) {
        this.inc({ direction: d }, s.retiredThrottled[d] + sum(s, d, (l) => l.throttledSeconds))
      }
    },
  })
  directionGauge(
    registers,
    s,
    'shoal_bandwidth_cap_bytes_per_second',
    'Configured bandwidth cap per direction (0 = unlimited)',
    (l) => l.rate,
  )
  directionGauge(
    registers,
    s,
    'shoal_bandwidth_burst_bytes',
    'Token bucket size per direction (0 = unlimited)',
    (l) => l.burst,
  )
  new Gauge({
    name: 'shoal_bandwidth_clock_seconds',
    help: 'Monotonic clock (s) when this scrape read the counters above: exact 1-s rates from two scrapes, however late they arrive',
    registers,
    collect() {
      this.set(performance.now() / 1000)
    },
  })
  directionGauge(
    registers,
    s,
    'shoal_bandwidth_waiting_flows',
    'Peer connections waiting for bandwidth now',
    (l) => l.waiting,
  )
}

/** A gauge per direction whose value is read from the limiters at scrape time. */
function directionGauge(
  registers: Registry[],
  s: Sources,
  name: string,
  help: string,
  pick: (l: Limiter) => number,
): void {
  new Gauge({
    name,
    help,
    labelNames: ['direction'],
    registers,
    collect() {
      for (const d of DIRECTIONS) this.set({ direction: d }, sum(s, d, pick))
    },
  })
}
