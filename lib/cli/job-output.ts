/**
 * How `shoal job` shows a job: the per-target table (host, path, phase, seconds, source,
 * error), the one-line list, the JSON result, and the exit of a finished job (0 only when every
 * target succeeded; otherwise the exit of the targets' one error code, or 1 for JOB_FAILED).
 */
import { type ErrorCode, ErrorCodes, ShoalError } from '../errors/index.js'
import type { Distribution, TargetStatusT } from '../jobs/kinds.js'

/** Done: the controller has seen this spec and run, and every line is final. */
export function isFinished(d: Distribution): boolean {
  const s = d.status
  return (
    s !== undefined &&
    s.observedGeneration >= d.metadata.generation &&
    s.observedRun >= d.spec.run &&
    (s.phase === 'Succeeded' || s.phase === 'Failed')
  )
}

export function jobResult(d: Distribution): Record<string, unknown> {
  const s = d.status
  return {
    name: d.metadata.name,
    namespace: d.metadata.namespace,
    uid: d.metadata.uid,
    run: d.spec.run,
    cancelled: d.spec.cancelled,
    phase: s?.phase ?? 'Pending',
    tag: s?.tag,
    push: s?.push,
    targets: s?.targets ?? [],
    counts: s?.counts,
    conditions: s?.conditions ?? [],
    startedAt: s?.startedAt,
    finishedAt: s?.finishedAt,
  }
}

/** The headline and the table of one job. */
export function jobTable(d: Distribution): string[] {
  const s = d.status
  const c = s?.counts
  const head = `job ${d.metadata.name}: ${s?.phase ?? 'Pending (the controller has not summarised it yet)'}${
    c ? ` (${c.succeeded} of ${c.total} targets succeeded, ${c.failed} failed, ${c.running} running)` : ''
  }${d.spec.cancelled ? ', cancelled' : ''}${d.spec.run > 1 ? `, run ${d.spec.run}` : ''}`
  const rows: string[][] = [['', 'HOST', 'PATH', 'PHASE', 'SECONDS', 'SOURCE', 'ERROR']]
  const row = (what: string, l: TargetStatusT) =>
    rows.push([
      what,
      l.host,
      l.name ? `${l.path.replace(/\/$/, '')}/${l.name}` : l.path,
      l.phase,
      l.phase === 'Succeeded' || l.seconds > 0 ? l.seconds.toFixed(1) : '-',
      l.source ?? '-',
      l.lastError ?? '-',
    ])
  if (s?.push) row('push', s.push)
  for (const l of s?.targets ?? []) row('pull', l)
  if (!s) for (const t of d.spec.targets) rows.push(['pull', t.host, t.path, 'Pending', '-', '-', '-'])
  return [head, ...table(rows)]
}

export function listLines(items: Distribution[], now = Date.now()): string[] {
  const rows = [['NAME', 'PHASE', 'TARGETS', 'SUCCEEDED', 'FAILED', 'RUN', 'AGE']]
  for (const d of items) {
    const c = d.status?.counts
    rows.push([
      d.metadata.name,
      `${d.status?.phase ?? 'Pending'}${d.spec.cancelled ? ' (cancelled)' : ''}`,
      String(d.spec.targets.length),
      String(c?.succeeded ?? 0),
      String(c?.failed ?? 0),
      String(d.spec.run),
      age(now - Date.parse(d.metadata.creationTimestamp)),
    ])
  }
  return items.length === 0 ? ['no jobs'] : table(rows)
}

/** Columns padded to their widest cell; the last column is not padded. */
function table(rows: string[][]): string[] {
  const widths: number[] = []
  for (const r of rows)
    for (const [i, cell] of r.entries()) widths[i] = Math.max(widths[i] ?? 0, [...cell].length)
  return rows.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell + ' '.repeat((widths[i] ?? 0) - [...cell].length)))
      .join('  ')
      .trimEnd(),
  )
}

function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 120) return `${s}s`
  if (s < 7200) return `${Math.floor(s / 60)}m`
  if (s < 172_800) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86_400)}d`
}

/**
 * The error a failed job exits with: the code all failed lines share (their lastError starts
 * with it: "TIMEOUT: host … did not start …" exits 124), else JOB_FAILED (exit 1). The result
 * rides along in details so `--json` prints it with the error.
 */
export function jobFailure(d: Distribution): ShoalError {
  const s = d.status
  // A failed push failed every target for its reason: its code is the job's.
  const failed =
    s?.push?.phase === 'Failed' ? [s.push] : (s?.targets ?? []).filter((l) => l.phase === 'Failed')
  const codes = new Set(failed.map((l) => /^([A-Z_]+):/.exec(l.lastError ?? '')?.[1]))
  const only = codes.size === 1 ? [...codes][0] : undefined
  const code: ErrorCode = only && Object.hasOwn(ErrorCodes, only) ? (only as ErrorCode) : 'JOB_FAILED'
  const message = s?.conditions.find((c) => c.type === 'Failed')?.message ?? 'some targets failed'
  return new ShoalError(code, `job ${d.metadata.name} failed: ${message}`, {
    details: { result: jobResult(d) },
  })
}
