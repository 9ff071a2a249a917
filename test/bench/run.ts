/**
 * `npm run bench`: distributes S bytes to N Shoal agents (separate processes, every host capped
 * at B when the build supports caps) and, in the same run, the same S to an aria2c swarm at the
 * same caps, to HTTP clients of one capped server (the FTP-style baseline), and one uncapped
 * transfer against a plain TCP copy. Prints a table (stdout; progress goes to stderr), writes
 * the figures as JSON and the completion times as an SVG chart.
 *
 *   node --import tsx test/bench/run.ts [--size 128MiB] [--agents 20] [--cap 8MiB] ...
 *
 * Build first (npx tsc -p tsconfig.build.json): it measures the binaries in dist/.
 */
import { execFileSync } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { createWriteStream, existsSync, readFileSync } from 'node:fs'
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { DEFAULT_NAMESPACE, type Digest } from '../../lib/core/index.js'
import { ShoalError } from '../../lib/errors/index.js'
import { HttpClient, urlPath } from '../../lib/http/index.js'
import { aria2Available, runAria2Swarm } from './aria2.js'
import { formatBytes, parseSize } from './helpers.js'
import { runHttpBaseline } from './http-baseline.js'
import { distCmd, ProcGroup, ROOT } from './procs.js'
import {
  type BenchParams,
  buildResult,
  chartSpec,
  type PhaseResults,
  type RunMeta,
  resultNotes,
  resultTable,
} from './report.js'
import { type Caps, type Cluster, capsSupported, pushFile, runSwarm, startCluster } from './shoal.js'
import { runSingle } from './single.js'
import { renderChart } from './svg.js'

const PARTS = ['shoal', 'aria2', 'http', 'single'] as const

const USAGE = `usage: node --import tsx test/bench/run.ts [options]
  --size <bytes>         blob size S (default 128MiB; units B, KiB, MiB, GiB, KB, MB, GB)
  --agents <n>           hosts N (default 20)
  --cap <bytes>          per-host cap B, bytes per second, egress and ingress (default 8MiB)
  --burst <bytes>        burstBytes passed to Shoal's caps (default: Shoal's own default)
  --no-caps              run Shoal uncapped even when the build supports caps
  --parts <list>         comma-separated subset of ${PARTS.join(',')} (default: all)
  --warmup <bytes>       a distribution of this size through the same agents first, not measured
                         (default S/8, at least 1 MiB; 0 = cold agents): see docs/performance.md
  --http-clients <n>     clients of the HTTP baseline (default min(N, 4)); scaled to N·S
  --http-size <bytes>    bytes each HTTP client fetches (default S/4)
  --single-size <bytes>  size of the single uncapped transfer (default 1GiB)
  --timeout <seconds>    per phase (default 300)
  --workdir <dir>        data and logs (default .shoal/bench; emptied first)
  --json <file>          figures as JSON (default <workdir>/result.json)
  --chart <file>         completion-time chart, SVG (default <workdir>/completion.svg)
  --keep                 keep blobs and data folders (logs are always kept)
  --log-level <level>    log level of the herd and agents (default info; debug shows every peer)
  --node-args <flags>    extra node flags for the herd and agents, space-separated, e.g.
                         "--cpu-prof --cpu-prof-dir=/tmp/prof" or "--perf-basic-prof"`

function options() {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '128MiB' },
      agents: { type: 'string', default: '20' },
      cap: { type: 'string', default: '8MiB' },
      burst: { type: 'string' },
      'no-caps': { type: 'boolean', default: false },
      parts: { type: 'string', default: PARTS.join(',') },
      'http-clients': { type: 'string' },
      'http-size': { type: 'string' },
      'single-size': { type: 'string', default: '1GiB' },
      timeout: { type: 'string', default: '300' },
      workdir: { type: 'string', default: '.shoal/bench' },
      json: { type: 'string' },
      chart: { type: 'string' },
      keep: { type: 'boolean', default: false },
      'node-args': { type: 'string' },
      warmup: { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', default: false },
    },
  })
  const int = (name: string, v: string, min: number) => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < min)
      throw new ShoalError('USAGE', `--${name} must be an integer ≥ ${min}`)
    return n
  }
  const parts = values.parts.split(',').map((s) => s.trim())
  for (const part of parts)
    if (!(PARTS as readonly string[]).includes(part))
      throw new ShoalError('USAGE', `unknown part "${part}" (known: ${PARTS.join(', ')})`)
  const size = parseSize(values.size)
  const agents = int('agents', values.agents, 1)
  const workdir = resolve(values.workdir)
  return {
    help: values.help,
    size,
    agents,
    cap: parseSize(values.cap),
    burst: values.burst === undefined ? undefined : parseSize(values.burst),
    noCaps: values['no-caps'],
    parts,
    httpClients: values['http-clients']
      ? int('http-clients', values['http-clients'], 1)
      : Math.min(agents, 4),
    httpSize: values['http-size'] ? parseSize(values['http-size']) : Math.max(1, Math.floor(size / 4)),
    singleSize: parseSize(values['single-size']),
    timeoutMs: int('timeout', values.timeout, 1) * 1000,
    workdir,
    json: resolve(values.json ?? join(workdir, 'result.json')),
    chart: resolve(values.chart ?? join(workdir, 'completion.svg')),
    keep: values.keep,
    logLevel: values['log-level'],
    warmup:
      values.warmup === undefined
        ? Math.max(1 << 20, Math.floor(size / 8))
        : /^0+$/.test(values.warmup.trim())
          ? 0
          : parseSize(values.warmup),
    nodeArgs: (values['node-args'] ?? '').split(/\s+/).filter(Boolean),
  }
}

const t0 = performance.now()
const say = (line: string) =>
  process.stderr.write(`bench [${((performance.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${line}\n`)

async function writeRandomFile(path: string, size: number): Promise<void> {
  const stream = createWriteStream(path)
  const chunk = Buffer.allocUnsafe(1 << 20)
  for (let written = 0; written < size; written += chunk.length) {
    randomFillSync(chunk)
    if (!stream.write(Buffer.from(chunk.subarray(0, Math.min(chunk.length, size - written)))))
      await new Promise<void>((r) => stream.once('drain', () => r()))
  }
  await new Promise<void>((res, rej) => stream.end((err?: Error | null) => (err ? rej(err) : res())))
}

function runMeta(started: Date): RunMeta {
  const git = (...args: string[]) => {
    try {
      return execFileSync('git', args, {
        cwd: ROOT,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim()
    } catch {
      return ''
    }
  }
  const osName = (() => {
    try {
      return (
        /^PRETTY_NAME="?([^"\n]*)/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? process.platform
      )
    } catch {
      return process.platform
    }
  })()
  return {
    started_at: started.toISOString(),
    command: `node --import tsx test/bench/run.ts ${process.argv.slice(2).join(' ')}`.trim(),
    commit: `${git('rev-parse', '--short', 'HEAD') || 'unknown'}${git('status', '--porcelain') ? '+dirty' : ''}`,
    machine: {
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model ?? 'unknown',
      mem_gib: Math.round(totalmem() / 1024 ** 3),
      os: osName,
      node: process.version,
    },
  }
}

async function main(): Promise<void> {
  const o = options()
  if (o.help) {
    process.stdout.write(`${USAGE}\n`)
    return
  }
  if (!existsSync(distCmd('shoal')))
    throw new ShoalError('UNAVAILABLE', 'dist/ is missing: build first (npx tsc -p tsconfig.build.json)')
  const started = new Date()
  const support = await capsSupported(o.burst !== undefined)
  const capsApplied = !o.noCaps && support.agent && support.origin
  const capsNote = o.noCaps
    ? 'Shoal run uncapped (--no-caps)'
    : capsApplied
      ? "caps set in the origin's and every agent's config"
      : `this build has no bandwidth caps (agent: ${support.agent}, origin: ${support.origin}); Shoal ran uncapped`
  const params: BenchParams = {
    size: o.size,
    agents: o.agents,
    cap: o.cap,
    burst: o.burst,
    capsApplied,
    capsNote,
    httpClients: o.httpClients,
    httpSize: o.httpSize,
    singleSize: o.singleSize,
    parts: o.parts,
    warmup: o.parts.includes('shoal') ? o.warmup : 0,
  }
  say(
    `S=${formatBytes(o.size)} N=${o.agents} B=${formatBytes(o.cap)}/s bound S/B=${(o.size / o.cap).toFixed(1)} s; ${capsNote}`,
  )

  await rm(o.workdir, { recursive: true, force: true })
  await mkdir(o.workdir, { recursive: true })
  const procs = new ProcGroup()
  const onSignal = () => {
    procs.killAllNow()
    process.exit(130)
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  process.once('exit', () => procs.killAllNow())

  const results: PhaseResults = {}
  const blob = join(o.workdir, 'input', 'blob.bin')
  const want = (part: string) => o.parts.includes(part)
  try {
    if (want('shoal') || want('aria2') || want('http')) {
      await mkdir(dirname(blob), { recursive: true })
      await writeRandomFile(blob, o.size)
    }
    let torrent: { bytes: Buffer; name: string } | undefined
    if (want('shoal') || want('aria2')) {
      const caps: Caps | undefined = capsApplied ? { bytesPerSec: o.cap, burstBytes: o.burst } : undefined
      const agents = want('shoal') ? o.agents : 0
      say(`shoal: starting a herd and ${agents} agents`)
      const cluster = await startCluster({
        dir: join(o.workdir, 'shoal'),
        agents,
        procs,
        caps: { agent: caps, origin: caps },
        nodeArgs: o.nodeArgs,
        logLevel: o.logLevel,
      })
      try {
        if (want('shoal') && o.warmup > 0) results.warmupMakespan = await warmUp(cluster, o)
        const digest = await pushFile(cluster, blob)
        say(`shoal: pushed ${digest}`)
        torrent = { bytes: await metainfo(cluster, digest), name: digest.hex }
        if (want('shoal')) {
          say(`shoal: ${agents} agents pulling at once`)
          results.swarm = await runSwarm(cluster, digest, o.size, o.timeoutMs)
          const last = Math.max(...results.swarm.completion.map((c) => c ?? Number.NaN))
          say(`shoal: makespan ${last.toFixed(2)} s; ${results.swarm.failures.length} failures`)
          for (const f of results.swarm.failures) say(`shoal:   ${f}`)
        }
      } finally {
        await procs.stop([cluster.herd, ...cluster.agents.map((a) => a.proc)])
      }
      if (!o.keep) await removeData(join(o.workdir, 'shoal'))
    }
    if (want('aria2')) {
      if (!aria2Available()) say('aria2: aria2c is not installed; skipped')
      else if (torrent) {
        say(`aria2: 1 seeder and ${o.agents} leechers at ${formatBytes(o.cap)}/s`)
        results.aria2 = await runAria2Swarm({
          dir: join(o.workdir, 'aria2'),
          procs,
          torrent: torrent.bytes,
          file: blob,
          name: torrent.name,
          leechers: o.agents,
          capBytesPerSec: o.cap,
          timeoutMs: o.timeoutMs,
        })
        const last = Math.max(...results.aria2.completion.map((c) => c ?? Number.NaN))
        say(`aria2: makespan ${last.toFixed(2)} s; ${results.aria2.failures.length} failures`)
        if (!o.keep) await removeData(join(o.workdir, 'aria2'))
      }
    }
    if (want('http')) {
      const bytes = Math.min(o.httpSize, o.size)
      say(
        `http: ${o.httpClients} clients × ${formatBytes(bytes)} from one server capped at ${formatBytes(o.cap)}/s`,
      )
      results.http = await runHttpBaseline({
        dir: join(o.workdir, 'http'),
        file: blob,
        bytes,
        clients: o.httpClients,
        capBytesPerSec: o.cap,
        timeoutMs: o.timeoutMs,
      })
      say(`http: makespan ${Math.max(...results.http.completion).toFixed(2)} s`)
      if (!o.keep) await removeData(join(o.workdir, 'http'))
    }
    if (!o.keep) await rm(dirname(blob), { recursive: true, force: true })
    if (want('single')) {
      const file = join(o.workdir, 'single-input', 'blob.bin')
      await mkdir(dirname(file), { recursive: true })
      say(`single: generating ${formatBytes(o.singleSize)}`)
      await writeRandomFile(file, o.singleSize)
      results.single = await runSingle({
        dir: join(o.workdir, 'single'),
        procs,
        file,
        bytes: o.singleSize,
        timeoutMs: o.timeoutMs,
        log: say,
      })
      const s = results.single
      say(
        `single: Shoal ${s.shoalSeconds.toFixed(2)} s (${(s.bytes / 1e6 / s.shoalSeconds).toFixed(0)} MB/s), ` +
          `TCP copy ${s.tcpSeconds.toFixed(2)} s (${(s.bytes / 1e6 / s.tcpSeconds).toFixed(0)} MB/s)`,
      )
      if (!o.keep) {
        await removeData(join(o.workdir, 'single'))
        await rm(dirname(file), { recursive: true, force: true })
      }
    }
  } finally {
    await procs.stop()
  }

  const meta = runMeta(started)
  meta.duration_s = (Date.now() - started.getTime()) / 1000
  const result = buildResult(params, results, meta)
  await mkdir(dirname(o.json), { recursive: true })
  await writeFile(o.json, `${JSON.stringify(result, null, 2)}\n`)
  await mkdir(dirname(o.chart), { recursive: true })
  await writeFile(o.chart, renderChart(chartSpec(result)))
  process.stdout.write(
    `\nShoal benchmark: S=${formatBytes(o.size)}, N=${o.agents}, B=${formatBytes(o.cap)}/s, ` +
      `bound S/B=${result.bound_s.toFixed(1)} s (${capsNote})\n\n${resultTable(result)}\n\n` +
      resultNotes(result)
        .map((l) => `${l}\n`)
        .join('') +
      `machine: ${meta.machine.cpus} × ${meta.machine.cpu_model}, ${meta.machine.mem_gib} GiB, ${meta.machine.os}, Node ${meta.machine.node}; ` +
      `commit ${meta.commit}; ${meta.duration_s.toFixed(0)} s\nJSON: ${o.json}\nchart: ${o.chart}\n`,
  )
}

/** The .torrent the origin serves for the blob (what a stock client would be given). */
async function metainfo(cluster: Cluster, digest: Digest): Promise<Buffer> {
  const http = new HttpClient(cluster.originUrl, { name: 'origin' })
  return http.buffer('GET', urlPath`/namespace/${DEFAULT_NAMESPACE}/blobs/${digest}/metainfo`)
}

/** Removes a finished phase's blobs and data folders; its logs and small config files stay. */
/**
 * One distribution of `o.warmup` random bytes through the agents, not measured: agents are
 * long-running daemons, and a fresh Node process runs its hot paths unoptimised for the first
 * seconds (V8 compiles them as they get hot). Returns its makespan.
 */
async function warmUp(cluster: Cluster, o: ReturnType<typeof options>): Promise<number> {
  const file = join(o.workdir, 'input', 'warmup.bin')
  await writeRandomFile(file, o.warmup)
  const digest = await pushFile(cluster, file)
  say(`shoal: warm-up, ${cluster.agents.length} agents pulling ${formatBytes(o.warmup)} (not measured)`)
  const r = await runSwarm(cluster, digest, o.warmup, o.timeoutMs)
  if (r.failures.length) throw new ShoalError('UNAVAILABLE', `warm-up failed: ${r.failures.join('; ')}`)
  await rm(file, { force: true })
  return Math.max(...r.completion.map((c) => c ?? Number.NaN))
}

async function removeData(dir: string): Promise<void> {
  const keep = /^logs$|\.(yaml|sh|torrent|log)$/
  for (const entry of await readdir(dir).catch(() => [] as string[]))
    if (!keep.test(entry)) await rm(join(dir, entry), { recursive: true, force: true })
}

main().catch((err: unknown) => {
  const e = err as Error & { code?: string }
  process.stderr.write(`bench: ${e.code ? `${e.code}: ` : ''}${e.message}\n`)
  if (process.env.SHOAL_DEBUG) process.stderr.write(`${e.stack}\n`)
  process.exitCode = 1
})
