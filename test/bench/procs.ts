/**
 * The processes a benchmark run starts (herds, agents, aria2c, copy helpers): spawned with their
 * output in one log file each, waited for, measured through /proc, and stopped by pid — only
 * ours, never by name. Also free ports and a once-a-second /metrics sampler.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { ShoalError } from '../../lib/errors/index.js'
import { HttpClient } from '../../lib/http/index.js'
import { type CounterSample, parseProcStatTicks, parseProcStatusField, promSum } from './helpers.js'

/** The repository root (this file is test/bench/procs.ts). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const distCmd = (name: string) => join(ROOT, 'dist', 'cmd', `${name}.js`)

export interface Proc {
  name: string
  pid: number
  log: string
  child: ChildProcess
  /** Resolves with the exit code (or the signal's name) once the process is gone. */
  exited: Promise<number | string>
  alive: boolean
}

export class ProcGroup {
  private readonly procs: Proc[] = []

  /** Output goes to `log`; with `pipeStdout`, stdout stays readable on `child.stdout` instead. */
  spawn(name: string, cmd: string, args: string[], opts: { log: string; pipeStdout?: boolean }): Proc {
    const fd = openSync(opts.log, 'a')
    try {
      const stdout = opts.pipeStdout ? 'pipe' : fd
      const child = spawn(cmd, args, { stdio: ['ignore', stdout, fd], cwd: ROOT, env: process.env })
      if (!child.pid) throw new ShoalError('UNAVAILABLE', `cannot start ${name} (${cmd})`)
      const p: Proc = { name, pid: child.pid, log: opts.log, child, alive: true, exited: Promise.resolve(0) }
      p.exited = new Promise((res) => {
        child.once('exit', (code, signal) => {
          p.alive = false
          res(code ?? signal ?? -1)
        })
      })
      this.procs.push(p)
      return p
    } finally {
      closeSync(fd)
    }
  }

  /** SIGTERM to every live process of the group (or the given ones), SIGKILL after `graceMs`. */
  async stop(which: readonly Proc[] = this.procs, graceMs = 5_000): Promise<void> {
    const live = which.filter((p) => p.alive)
    for (const p of live) p.child.kill('SIGTERM')
    await Promise.race([Promise.all(live.map((p) => p.exited)), sleep(graceMs)])
    for (const p of live) if (p.alive) p.child.kill('SIGKILL')
    await Promise.all(live.map((p) => p.exited))
    for (const p of live) this.procs.splice(this.procs.indexOf(p), 1)
  }

  /** Last resort on exit or Ctrl-C: synchronous SIGKILL of whatever is still running. */
  killAllNow(): void {
    for (const p of this.procs) if (p.alive) p.child.kill('SIGKILL')
  }
}

/** Waits until `GET <baseUrl>/readiness` answers 200; fails early when the process died. */
export async function waitReady(p: Proc, baseUrl: string, timeoutMs = 60_000): Promise<void> {
  const http = new HttpClient(baseUrl, { name: p.name, timeoutMs: 2_000 })
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!p.alive) throw new ShoalError('UNAVAILABLE', `${p.name} exited during start-up; see ${p.log}`)
    if ((await http.status('GET', '/readiness').catch(() => 0)) === 200) return
    await sleep(100)
  }
  throw new ShoalError('TIMEOUT', `${p.name} not ready within ${timeoutMs / 1000} s; see ${p.log}`)
}

/**
 * Ports for the processes a run starts are picked below the kernel's ephemeral range
 * (net.ipv4.ip_local_port_range, 32768–60999 here): a port the OS handed out with listen(0) and
 * gave back is free only until some process's next outgoing connection takes it as its source
 * port, and with 20 agents dialling each other that race was lost (EADDRINUSE at start-up).
 * Each port is handed out once per run.
 */
const PORT_LOW = 10_000
const PORT_HIGH = 32_000
const handedOut = new Set<number>()

const canListen = (port: number, host: string) =>
  new Promise<boolean>((res) => {
    const srv = createServer()
    srv.once('error', () => res(false))
    srv.listen(port, host, () => srv.close(() => res(true)))
  })

const randomPort = () => PORT_LOW + Math.floor(Math.random() * (PORT_HIGH - PORT_LOW))

/** A port nothing listens on, outside the ephemeral range, not handed out before in this run. */
export async function freePort(): Promise<number> {
  return freePortRange(1)
}

/** `count` consecutive free ports (the herd counts its ports from one base). */
export async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = randomPort()
    let ok = true
    for (let i = 0; i < count && ok; i++) {
      const port = base + i
      ok = !handedOut.has(port) && (await canListen(port, '0.0.0.0')) && (await canListen(port, '127.0.0.1'))
    }
    if (ok) {
      for (let i = 0; i < count; i++) handedOut.add(base + i)
      return base
    }
  }
  throw new ShoalError('UNAVAILABLE', `no ${count} consecutive free ports found in ${PORT_LOW}–${PORT_HIGH}`)
}

let clkTck: number | undefined
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })
    clkTck = Number(out.stdout?.trim()) || 100
  }
  return clkTck
}

/** user + system CPU seconds of a live process (all its threads); undefined once it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    return parseProcStatTicks(readFileSync(`/proc/${pid}/stat`, 'utf8')) / ticksPerSecond()
  } catch {
    return undefined
  }
}

/** Peak resident set size (VmHWM) of a live process, bytes. */
export function peakRss(pid: number): number | undefined {
  try {
    return parseProcStatusField(readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmHWM')
  } catch {
    return undefined
  }
}

export interface MetricsTarget {
  name: string
  /** Base URL whose /metrics is scraped. */
  url: string
}

export interface ByteSeries {
  /** Piece payload, counted by the engine when a block is written out / accepted whole. */
  sent: CounterSample[]
  received: CounterSample[]
  /**
   * Bytes through the host's bandwidth limiter (shoal_bandwidth_bytes_total): what the caps
   * count, as it crosses the socket; empty for builds without it.
   */
  wireSent: CounterSample[]
  wireReceived: CounterSample[]
}

/**
 * Scrapes the engine's byte counters (shoal_torrent_bytes_sent_total / _received_total) of each
 * target about once a second; each sample is stamped when its answer arrived.
 */
export class MetricsSampler {
  readonly series = new Map<string, ByteSeries>()
  private timer: NodeJS.Timeout | undefined
  private inflight: Promise<void> | undefined
  private readonly clients: Array<{ name: string; http: HttpClient }>

  constructor(
    targets: readonly MetricsTarget[],
    private readonly t0: number,
  ) {
    this.clients = targets.map((t) => ({ name: t.name, http: new HttpClient(t.url, { name: t.name }) }))
    for (const t of targets)
      this.series.set(t.name, { sent: [], received: [], wireSent: [], wireReceived: [] })
  }

  async sample(): Promise<void> {
    await Promise.all(
      this.clients.map(async ({ name, http }) => {
        const text = await http
          .buffer('GET', '/metrics', { timeoutMs: 2_000 })
          .then((b) => b.toString('utf8'))
          .catch(() => undefined)
        if (text === undefined) return
        const t = performance.now() - this.t0
        const s = this.series.get(name) as ByteSeries
        const sent = promSum(text, 'shoal_torrent_bytes_sent_total')
        const received = promSum(text, 'shoal_torrent_bytes_received_total')
        if (sent !== undefined) s.sent.push({ t, value: sent })
        if (received !== undefined) s.received.push({ t, value: received })
        const wireSent = promSum(text, 'shoal_bandwidth_bytes_total', 'direction="egress"')
        const wireReceived = promSum(text, 'shoal_bandwidth_bytes_total', 'direction="ingress"')
        // The host's own clock at the moment it read its counters, when it reports one: a
        // busy host answers late, and stamping on arrival turned a 1.1-s window into 0.95 s.
        const clock = promSum(text, 'shoal_bandwidth_clock_seconds')
        const wt = clock !== undefined && clock > 0 ? clock * 1000 : t
        if (wireSent !== undefined) s.wireSent.push({ t: wt, value: wireSent })
        if (wireReceived !== undefined) s.wireReceived.push({ t: wt, value: wireReceived })
      }),
    )
  }

  start(intervalMs = 1_000): void {
    this.timer = setInterval(() => {
      // A slow round is not stacked under the next one.
      this.inflight ??= this.sample().finally(() => {
        this.inflight = undefined
      })
    }, intervalMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    await this.inflight
  }

  /** Counter growth between the first and the last sample of a target. */
  delta(name: string, which: keyof ByteSeries): number | undefined {
    const s = this.series.get(name)?.[which]
    if (!s || s.length < 2) return undefined
    return (s[s.length - 1] as CounterSample).value - (s[0] as CounterSample).value
  }
}
