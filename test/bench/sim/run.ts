/**
 * The swarm simulator's command line (`npm run bench:sim -- --help`): one run with the given
 * parameters, or a sweep of values (comma-separated) of any of them; prints a table and, with
 * --json, every result.
 */
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { DEFAULT_PARAMS, type SimParams, type SimResult, Swarm } from './swarm.js'

const UNITS: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
}

function bytes(v: string): number {
  if (v === 'inf' || v === 'none') return Number.POSITIVE_INFINITY
  const m = /^([\d.]+)\s*([KMG]i?B|B)?$/.exec(v)
  if (!m) throw new Error(`not a size: ${v}`)
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 'B']!)
}

const KEYS: Record<string, { key: keyof SimParams; parse: (v: string) => number; help: string }> = {
  agents: { key: 'agents', parse: Number, help: 'agents N' },
  size: { key: 'size', parse: bytes, help: 'blob size S (128MiB, 1GiB)' },
  'piece-length': { key: 'pieceLength', parse: bytes, help: "piece length (0 = the engine's for S)" },
  cap: { key: 'agentCap', parse: bytes, help: "agents' cap B per second, both ways (8MiB, 125MB, inf)" },
  'origin-cap': { key: 'originCap', parse: bytes, help: 'origin cap per second (default: --cap)' },
  origins: { key: 'origins', parse: Number, help: 'origins' },
  latency: { key: 'latencyMs', parse: Number, help: 'one-way latency, ms' },
  cpu: {
    key: 'cpuBytesPerSec',
    parse: bytes,
    help: 'per-host CPU ceiling, bytes sent + received per second',
  },
  numwant: { key: 'numwant', parse: Number, help: 'peers asked of the tracker' },
  conns: { key: 'maxConnections', parse: Number, help: 'maxConnectionsPerTorrent' },
  slots: { key: 'uploadSlots', parse: Number, help: "agents' uploadSlots" },
  'origin-slots': { key: 'originUploadSlots', parse: Number, help: 'origin uploadSlots' },
  'serve-once': { key: 'originServeOnceMs', parse: Number, help: 'originServeOnceMs (0 = off)' },
  interval: { key: 'announceIntervalS', parse: Number, help: 'tracker announce interval, s' },
  seed: { key: 'seed', parse: Number, help: 'PRNG seed' },
}

function usage(): string {
  const lines = Object.entries(KEYS).map(
    ([k, v]) => `  --${k.padEnd(13)} ${v.help} (default ${DEFAULT_PARAMS[v.key]})`,
  )
  return `npm run bench:sim -- [--flag v1,v2,...]... [--json file]\n${lines.join('\n')}\nEvery combination of the listed values runs.`
}

const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '—')

export function row(r: SimResult): string {
  const p = r.params
  const m = r.makespanOverBound
  return [
    p.agents,
    `${(p.size / 2 ** 20).toFixed(0)} MiB`,
    `${(p.agentCap / 1e6).toFixed(1)} MB/s`,
    p.numwant,
    p.maxConnections,
    p.uploadSlots,
    p.originUploadSlots,
    f2(m.p50),
    f2(m.p99),
    f2(m.max),
    f2(r.floorS / r.boundS),
    f2(r.originEgressCopies),
    r.announces,
    r.announcePeakPerS,
    r.announceMeanPerS.toFixed(1),
    `${r.wallS.toFixed(1)} s`,
  ].join(' | ')
}

export const HEADER =
  'N | S | B | numwant | conns | slots | origin slots | p50 | p99 | max (÷ S/B) | floor | origin copies | announces | peak/s | mean/s | wall'

async function main(): Promise<void> {
  const options: Record<string, { type: 'string' }> = { json: { type: 'string' } }
  for (const k of Object.keys(KEYS)) options[k] = { type: 'string' }
  const parsed = parseArgs({ options: { ...options, help: { type: 'boolean' } }, strict: true })
  const values = parsed.values as Record<string, string | boolean | undefined>
  if (values.help) {
    console.log(usage())
    return
  }
  let combos: SimParams[] = [{ ...DEFAULT_PARAMS }]
  for (const [flag, spec] of Object.entries(KEYS)) {
    const v = values[flag]
    if (typeof v !== 'string') continue
    const list = v.split(',').map(spec.parse)
    combos = combos.flatMap((c) => list.map((x) => ({ ...c, [spec.key]: x })))
  }
  if (typeof values['origin-cap'] !== 'string') for (const c of combos) c.originCap = c.agentCap
  console.log(HEADER)
  const results: SimResult[] = []
  for (const params of combos) {
    const r = await new Swarm(params).run()
    results.push(r)
    console.log(row(r))
  }
  if (typeof values.json === 'string') writeFileSync(values.json, `${JSON.stringify(results, null, 1)}\n`)
}

if (import.meta.url === `file://${process.argv[1]}`) await main()
