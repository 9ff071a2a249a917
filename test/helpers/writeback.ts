/**
 * Write-back is asynchronous (an upload is acknowledged once its write-back mark is durable):
 * tests that look at the backend after a push wait for it here, polling the origin's
 * shoal_origin_writeback_pending gauge with a deadline.
 */
import type { Registry } from '../../lib/metrics/index.js'

/** A metric's value with these labels (0 when absent). */
export async function metricValue(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name)
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l))
  return Number(v?.value ?? 0)
}

/** Polls `check` every 20 ms until it returns true; throws naming `what` after `ms`. */
export async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  ms = 15_000,
): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Resolves once the origin has no write-back pending (every committed blob is in the backend). */
export function writtenBack(registry: Registry, ms = 15_000): Promise<void> {
  return until(
    'the origin to write every blob back',
    async () => (await metricValue(registry, 'shoal_origin_writeback_pending')) === 0,
    ms,
  )
}
