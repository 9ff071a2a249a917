/**
 * Pure helpers of the benchmark harness (no I/O), unit-tested in test/unit/bench-helpers.test.ts:
 * sizes, percentiles, /proc parsing, Prometheus text, rate windows, a token bucket, the table.
 */
import { ShoalError } from '../../lib/errors/index.js'

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1000,
  kb: 1000,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
}

/** "128MiB", "1GiB", "8mib", "1.5GB", "4096" → bytes (integer). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  const unit = m ? UNITS[(m[2] ?? '').toLowerCase()] : undefined
  if (!m || unit === undefined)
    throw new ShoalError('USAGE', `not a size: "${text}" (use e.g. 4096, 16MiB, 1GiB, 1.5GB)`)
  const n = Math.round(Number(m[1]) * unit)
  if (!Number.isSafeInteger(n) || n <= 0) throw new ShoalError('USAGE', `size out of range: "${text}"`)
  return n
}

/** Bytes as a short human string with binary units: 134217728 → "128 MiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${Number.isInteger(v) ? v : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`
}

/**
 * The p-th percentile (0–100) with linear interpolation between closest ranks (numpy's default),
 * so p50 of [1,2,3,4] is 2.5 and p100 is the max. NaN for an empty list.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = (Math.min(100, Math.max(0, p)) / 100) * (sorted.length - 1)
  const lo = Math.floor(rank)
  const hi = Math.ceil(rank)
  const a = sorted[lo] as number
  const b = sorted[hi] as number
  return a + (b - a) * (rank - lo)
}

export interface Summary {
  p50: number
  p95: number
  max: number
}

export function summarize(values: readonly number[]): Summary {
  return { p50: percentile(values, 50), p95: percentile(values, 95), max: percentile(values, 100) }
}

/**
 * CPU time of a process from /proc/<pid>/stat, in clock ticks (utime + stime). The command
 * name (field 2) is in parentheses and may hold spaces or ')', so fields are counted from the
 * last ')'.
 */
export function parseProcStatTicks(stat: string): number {
  const close = stat.lastIndexOf(')')
  if (close < 0) throw new ShoalError('BAD_REQUEST', 'not a /proc/<pid>/stat line')
  // After ')': field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
  const fields = stat
    .slice(close + 1)
    .trim()
    .split(/\s+/)
  const utime = Number(fields[11])
  const stime = Number(fields[12])
  if (!Number.isFinite(utime) || !Number.isFinite(stime))
    throw new ShoalError('BAD_REQUEST', 'no utime/stime in /proc/<pid>/stat')
  return utime + stime
}

/** A "VmHWM:   123456 kB" style field of /proc/<pid>/status, in bytes; undefined when absent. */
export function parseProcStatusField(status: string, field: string): number | undefined {
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s*kB`, 'm').exec(status)
  return m ? Number(m[1]) * 1024 : undefined
}

/**
 * Sum of every sample of one metric in Prometheus text format (all label sets); 0 when the
 * metric is declared (`# TYPE`) without samples yet (a labelled counter never incremented),
 * undefined when it is absent. `name` must match exactly (not as a prefix); with `label`, only
 * the samples whose label set contains it.
 */
export function promSum(text: string, name: string, label?: string): number | undefined {
  let sum: number | undefined
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ') && line.split(' ')[2] === name) sum ??= 0
    if (!line.startsWith(name)) continue
    const rest = line.slice(name.length)
    if (rest[0] !== ' ' && rest[0] !== '{') continue
    // `label` (e.g. 'direction="egress"') keeps only the series that carry it.
    if (label !== undefined && (rest[0] !== '{' || !rest.slice(0, rest.lastIndexOf('}')).includes(label)))
      continue
    const afterLabels = rest[0] === '{' ? rest.slice(rest.lastIndexOf('}') + 1) : rest
    const value = Number(afterLabels.trim().split(/\s+/)[0])
    if (Number.isFinite(value)) sum = (sum ?? 0) + value
  }
  return sum
}

export interface CounterSample {
  /** ms (any monotonic clock) */
  t: number
  value: number
}

/**
 * The highest 1-s rate (units per second) of a counter sampled about once a second. Samples
 * closer than 0.9 s are merged with the next one, so timer jitter cannot make a spike out of a
 * few ms; a window shorter than 1 s (a run that ends early, or lasts under a second) counts its
 * growth as if spread over a whole second — what a 1-s window around it would have seen at least.
 */
export function maxRate(samples: readonly CounterSample[], windowMs = 1000): number {
  let best = 0
  let from = samples[0]
  for (let i = 1; i < samples.length && from; i++) {
    const s = samples[i] as CounterSample
    const dt = s.t - from.t
    if (dt < 0.9 * windowMs && i < samples.length - 1) continue
    const span = dt >= 0.9 * windowMs ? dt : windowMs
    best = Math.max(best, ((s.value - from.value) * 1000) / span)
    from = s
  }
  return best
}

/**
 * A counter's growth per whole second since the start of its clock (index = second): each
 * interval between two samples is booked in the second its end falls in. Coarse (samples come
 * about once a second), but enough to see a ramp-up, a plateau and a tail.
 */
export function perSecond(samples: readonly CounterSample[]): number[] {
  const out: number[] = []
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1] as CounterSample
    const b = samples[i] as CounterSample
    const sec = Math.max(0, Math.floor(b.t / 1000))
    while (out.length <= sec) out.push(0)
    out[sec] = (out[sec] as number) + (b.value - a.value)
  }
  return out
}

/** Element-wise sum of arrays of different lengths. */
export function sumSeries(series: readonly (readonly number[])[]): number[] {
  const out: number[] = []
  for (const s of series)
    for (let i = 0; i < s.length; i++) {
      while (out.length <= i) out.push(0)
      out[i] = (out[i] as number) + (s[i] as number)
    }
  return out
}

/**
 * A token bucket by virtual scheduling (GCRA): each `delayFor(n)` books n bytes at the cap and
 * answers how long the caller must wait before sending them. FIFO-fair across callers sharing
 * the bucket; `burstBytes` may go out at once after an idle period.
 */
export class TokenBucket {
  private tat = 0

  constructor(
    private readonly bytesPerSec: number,
    private readonly burstBytes: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(bytesPerSec > 0)) throw new ShoalError('USAGE', 'a token bucket needs a positive rate')
  }

  /** ms to wait before sending `n` bytes (0 when they may go now). */
  delayFor(n: number): number {
    const now = this.now()
    const burstMs = (this.burstBytes * 1000) / this.bytesPerSec
    // Theoretical arrival time; being early by up to one burst is tolerated, so idle time
    // earns at most one burst of credit.
    this.tat = Math.max(this.tat, now) + (n * 1000) / this.bytesPerSec
    return Math.max(0, this.tat - burstMs - now)
  }
}

export interface Target {
  /** Printed next to the figure: "≤ 1.05". */
  op: '<=' | '>='
  value: number
}

export type Verdict = 'PASS' | 'MISS' | 'n/a'

export function verdict(value: number | null | undefined, target: Target): Verdict {
  if (value === null || value === undefined || !Number.isFinite(value)) return 'n/a'
  return (target.op === '<=' ? value <= target.value : value >= target.value) ? 'PASS' : 'MISS'
}

/** A plain text table: first column left-aligned, the others right-aligned. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const fmt = (cols: readonly string[]) =>
    cols
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)))
      .join('  ')
      .trimEnd()
  return [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n')
}

/** A number for the table: fixed digits, "–" when missing. */
export function fmt(value: number | null | undefined, digits = 2): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits)
}
