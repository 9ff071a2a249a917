/**
 * One Prometheus registry per daemon (never prom-client's global one), so several daemons
 * can live in one process, as they do in `shoal herd` and in the integration tests.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'

export { Counter, Gauge, Histogram, Registry }

/** Resolution of the event-loop delay histogram (shoal_nodejs_eventloop_lag_*), ms. */
export const EVENT_LOOP_MONITOR_MS = 100

export function createRegistry(component: string, opts: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry()
  registry.setDefaultLabels({ component })
  // The event-loop delay monitor samples on a timer of its own: prom-client's default (10 ms)
  // woke every idle daemon 100 times a second, which was most of an idle agent's CPU (about
  // 5 ms/s each; 20 agents on one host spent a tenth of a swarm's CPU on it). At 100 ms the
  // lag gauges still see any stall worth alerting on.
  if (opts.processMetrics)
    collectDefaultMetrics({
      register: registry,
      prefix: 'shoal_',
      eventLoopMonitoringPrecision: EVENT_LOOP_MONITOR_MS,
    })
  return registry
}

export function counter(registry: Registry, name: string, help: string, labelNames: string[] = []): Counter {
  const existing = registry.getSingleMetric(name)
  if (existing) return existing as Counter
  return new Counter({ name, help, labelNames, registers: [registry] })
}

export function gauge(registry: Registry, name: string, help: string, labelNames: string[] = []): Gauge {
  const existing = registry.getSingleMetric(name)
  if (existing) return existing as Gauge
  return new Gauge({ name, help, labelNames, registers: [registry] })
}

/**
 * A gauge read at scrape time from `read()`. It replaces one of the same name (a daemon started
 * again on the same registry), so the gauge reads the live object, not a stopped one.
 */
export function liveGauge(registry: Registry, name: string, help: string, read: () => number): void {
  if (registry.getSingleMetric(name)) registry.removeSingleMetric(name)
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read())
    },
  })
}
