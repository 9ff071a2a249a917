/**
 * One Prometheus registry per daemon (never prom-client's global one), so several daemons
 * can live in one process, as they do in `shoal herd` and in the integration tests.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'

export { Counter, Gauge, Histogram, Registry }

export function createRegistry(component: string, opts: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry()
  registry.setDefaultLabels({ component })
  if (opts.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'shoal_' })
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
