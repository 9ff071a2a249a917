/**
 * `shoal devcluster up|status|restart|down`: a herd and N agents as separate processes on the
 * ports of docs/architecture.md §3, each with its data and one log file under a work folder. The
 * state file (devcluster.json) records how each process was started, so `restart` can start it
 * again the same way.
 */
import { spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { stringify as stringifyYaml } from 'yaml'
import { isShoalError, ShoalError } from '../errors/index.js'
import { HttpClient } from '../http/index.js'
import { agentJobsRoot, builtBinary, clusterLayout, type ProcessSpec, S3_BUCKET } from './layout.js'
import { checkS3rverInstalled } from './s3.js'

export const DEFAULT_WORKDIR = '.shoal/devcluster'

/** How long one /health request may take before `status` calls the process down. */
const HEALTH_TIMEOUT_MS = 2000

export interface StateEntry {
  name: string
  pid: number
  readyUrl: string
  ports: Record<string, number>
  log: string
  /** The `shoal` arguments it was started with (absent in state files of older versions). */
  args?: string[]
  /** Its HTTP listeners (component → base URL); absent in older state files: readyUrl only. */
  health?: Record<string, string>
}

export interface ClusterState {
  workdir: string
  startedAt: string
  processes: StateEntry[]
  /** The agents take distribution jobs (hostName agent-N, roots WORKDIR/roots/agent-N). */
  jobs?: boolean
}

export interface ProcessStatus extends StateEntry {
  /** The recorded pid runs and is a shoal process. */
  alive: boolean
  /** Alive and every HTTP listener answered /health with 200. */
  up: boolean
  /** Why it is not up: "pid 123 not running", "health check failed: ECONNREFUSED". */
  reason?: string
}

const stateFile = (workdir: string) => join(workdir, 'devcluster.json')

export async function up(
  opts: {
    workdir?: string
    agents?: number
    readyTimeoutMs?: number
    basePort?: number
    agentBasePort?: number
    /** Origins in the ring (the herd's and N−1 more processes); default 1. */
    origins?: number
    /** Owners per blob; default min(origins, 3). */
    replicas?: number
    /** An S3-compatible server as a process of its own, every origin's backend. */
    s3?: boolean
    /** Agents take distribution jobs (default true; see LayoutOptions.jobs). */
    jobs?: boolean
  } = {},
): Promise<ClusterState> {
  const workdir = resolve(opts.workdir ?? DEFAULT_WORKDIR)
  const existing = await readState(workdir)
  if (existing?.processes.some((p) => isAlive(p.pid))) {
    throw new ShoalError(
      'ALREADY_EXISTS',
      `a devcluster is already running from ${workdir}; run "shoal devcluster down${workdirFlag(workdir)}" first`,
    )
  }
  const layout = clusterLayout(workdir, opts.agents ?? 3, opts.basePort, opts.agentBasePort, {
    origins: opts.origins,
    replicas: opts.replicas,
    s3: opts.s3,
    jobs: opts.jobs,
  })
  // Before anything starts: a production install has no s3rver.
  if (layout.s3) checkS3rverInstalled()
  await mkdir(join(workdir, 'logs'), { recursive: true })
  for (const [file, doc] of Object.entries(layout.configs)) {
    await mkdir(dirname(file), { recursive: true })
    await writeFile(
      file,
      `# Written by shoal devcluster up; rewritten at every up.\n${stringifyYaml(doc, { aliasDuplicateObjects: false })}`,
    )
  }
  const entry = builtBinary('shoal')
  const jobs = opts.jobs !== false
  // Each agent's jobs root exists from the start: a job can write there at once.
  if (jobs) for (const a of layout.agents) await mkdir(agentJobsRoot(workdir, a.name), { recursive: true })
  const state: ClusterState = { workdir, startedAt: new Date().toISOString(), processes: [], jobs }
  const timeout = opts.readyTimeoutMs ?? 30_000
  try {
    // In order, each awaited: S3 before the origins check their backend at start, the herd
    // (tracker, build-index) before the other origins and the agents announce to it.
    for (const spec of [...(layout.s3 ? [layout.s3] : []), layout.herd, ...layout.origins]) {
      const p = launch(entry, spec, workdir)
      state.processes.push(p)
      await writeState(state)
      await waitReady(p, timeout)
    }
    const agents = layout.agents.map((spec) => launch(entry, spec, workdir))
    state.processes.push(...agents)
    await writeState(state)
    for (const p of agents) await waitReady(p, timeout)
  } catch (err) {
    await down({ workdir })
    throw err
  }
  return state
}

/**
 * Each process of the devcluster, up only when its pid runs and every one of its HTTP
 * listeners answers /health (a process can run yet not serve: wedged, stopped, still
 * starting). Empty when no devcluster was started from `workdir`.
 */
export async function status(opts: { workdir?: string } = {}): Promise<ProcessStatus[]> {
  const state = await readState(resolve(opts.workdir ?? DEFAULT_WORKDIR))
  if (!state) return []
  return Promise.all(
    state.processes.map(async (p): Promise<ProcessStatus> => {
      if (!isAlive(p.pid)) return { ...p, alive: false, up: false, reason: `pid ${p.pid} not running` }
      const listeners = Object.entries(p.health ?? { [p.name]: p.readyUrl })
      const failures = await Promise.all(
        listeners.map(async ([component, url]) => {
          const why = await healthFailure(url)
          // Name the listener only when the process has several (the herd).
          return why && (listeners.length > 1 ? `${component} ${hostOf(url)}: ${why}` : why)
        }),
      )
      const failed = failures.filter((f): f is string => f !== undefined)
      return failed.length === 0
        ? { ...p, alive: true, up: true }
        : { ...p, alive: true, up: false, reason: `health check failed: ${failed.join('; ')}` }
    }),
  )
}

/**
 * Restarts one process (by name) or all of them in start order (S3, the herd, origins, agents), each started again with the
 * arguments it was first started with and awaited until ready before the next. A process
 * that is down is simply started. Returns the new state entries.
 */
export async function restart(
  opts: { workdir?: string; name?: string; readyTimeoutMs?: number; graceMs?: number } = {},
): Promise<StateEntry[]> {
  const workdir = resolve(opts.workdir ?? DEFAULT_WORKDIR)
  const state = await readState(workdir)
  if (!state)
    throw new ShoalError(
      'NOT_FOUND',
      `no devcluster was started from ${workdir}; start one with "shoal devcluster up${workdirFlag(workdir)}"`,
    )
  const names = state.processes.map((p) => p.name)
  if (opts.name !== undefined && !names.includes(opts.name))
    throw new ShoalError('USAGE', `unknown process "${opts.name}"; the devcluster has ${names.join(', ')}`)
  const entry = builtBinary('shoal')
  const restarted: StateEntry[] = []
  for (const [i, old] of state.processes.entries()) {
    if (opts.name !== undefined && old.name !== opts.name) continue
    if (!old.args || !old.health)
      throw new ShoalError(
        'UNAVAILABLE',
        `${workdir} was started by an older shoal that did not record how; run "shoal devcluster down${workdirFlag(workdir)}" and "up" again`,
      )
    await stop(old, opts.graceMs)
    const fresh = launch(entry, { ...old, args: old.args, health: old.health }, workdir)
    state.processes[i] = fresh
    await writeState(state)
    await waitReady(fresh, opts.readyTimeoutMs ?? 30_000)
    restarted.push(fresh)
  }
  return restarted
}

/** Stops in reverse start order (agents, origins, the herd, S3): SIGTERM, then SIGKILL after a grace period. Idempotent. */
export async function down(opts: { workdir?: string; graceMs?: number } = {}): Promise<number> {
  const workdir = resolve(opts.workdir ?? DEFAULT_WORKDIR)
  const state = await readState(workdir)
  if (!state) return 0
  let stopped = 0
  for (const p of [...state.processes].reverse()) if (await stop(p, opts.graceMs)) stopped++
  await rm(stateFile(workdir), { force: true })
  return stopped
}

/**
 * What to type next, with the ports this devcluster actually uses: push through the herd's
 * proxy, pull through an agent, remove, and the devcluster commands for this work folder.
 */
export function hints(state: ClusterState): string[] {
  const herd = state.processes.find((p) => p.name === 'herd')
  const agents = state.processes.filter((p) => p.name.startsWith('agent-'))
  const proxy = `127.0.0.1:${herd?.ports.proxy}`
  const wd = workdirFlag(state.workdir)
  const lines = [`push:    PushCLI push --src-path FILE --dst-host ${proxy}`]
  const first = agents[0]
  if (first) {
    const others = agents.slice(1).map((a) => `${a.name} 127.0.0.1:${a.ports.server}`)
    lines.push(
      `pull:    PullCLI pull --tag TAG --dst-path DIR --dst-host 127.0.0.1:${first.ports.server}` +
        (others.length > 0 ? `  (or ${others.join(', ')})` : ''),
    )
  }
  if (state.jobs && agents.length > 1 && herd) {
    // The first agent's root holds the source; the others receive it into theirs.
    const root = (name: string) => agentJobsRoot(state.workdir, name)
    const api = herd.ports.proxy === 15000 ? '' : ` --apiserver 127.0.0.1:${(herd.ports.proxy ?? 0) + 6}`
    const to = agents.slice(1).map((a) => ` --to ${a.name}:${root(a.name)}`)
    lines.push(
      `job:     shoal job run --src ${first?.name}:${join(root(first?.name ?? ''), 'FILE')}${to.join('')}${api} --wait  (put FILE in ${root(first?.name ?? '')} first)`,
    )
  }
  const origins = state.processes.filter((p) => p.name.startsWith('origin-'))
  if (origins.length > 0)
    lines.push(
      `ring:    origins ${[herd, ...origins].map((p) => `127.0.0.1:${p?.ports.origin}`).join(', ')} (GET /blobs/DIGEST/locations names the owners)`,
    )
  const s3 = state.processes.find((p) => p.name === 's3')
  if (s3)
    lines.push(
      `s3:      http://127.0.0.1:${s3.ports.s3}, bucket ${S3_BUCKET}, credentials S3RVER/S3RVER; objects under ${join(state.workdir, 's3')}`,
    )
  lines.push(
    `remove:  RemoveCLI remove --tag TAG --dst-host ${proxy}`,
    `manage:  shoal devcluster status${wd} | shoal devcluster restart [NAME]${wd} | shoal devcluster down${wd}`,
  )
  return lines
}

/** " --workdir DIR" when `workdir` is not the default one, for commands printed as hints. */
function workdirFlag(workdir: string): string {
  if (resolve(workdir) === resolve(DEFAULT_WORKDIR)) return ''
  return ` --workdir ${/^[\w./-]+$/.test(workdir) ? workdir : `'${workdir.replaceAll("'", `'\\''`)}'`}`
}

/** SIGTERM, then SIGKILL after the grace period; false when it was not running. */
async function stop(p: StateEntry, graceMs = 10_000): Promise<boolean> {
  if (!isAlive(p.pid)) return false
  process.kill(p.pid, 'SIGTERM')
  const deadline = Date.now() + graceMs
  while (isAlive(p.pid) && Date.now() < deadline) await sleep(50)
  if (isAlive(p.pid)) process.kill(p.pid, 'SIGKILL')
  // Its ports are free once it is gone, which a restart needs; SIGKILL takes a moment.
  const killDeadline = Date.now() + 5000
  while (isAlive(p.pid) && Date.now() < killDeadline) await sleep(20)
  return true
}

function launch(entry: string, spec: ProcessSpec, workdir: string): StateEntry {
  const log = join(workdir, 'logs', `${spec.name}.log`)
  const fd = openSync(log, 'a')
  try {
    // Detached so the cluster outlives `shoal devcluster up`; the JSON logs on stdout and
    // anything on stderr (a config error, say) go to the process's one log file.
    const child = spawn(process.execPath, [entry, ...spec.args], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: process.env,
    })
    child.unref()
    if (!child.pid) throw new ShoalError('UNAVAILABLE', `cannot start ${spec.name}`)
    return {
      name: spec.name,
      pid: child.pid,
      readyUrl: spec.readyUrl,
      ports: spec.ports,
      log,
      args: spec.args,
      health: spec.health,
    }
  } finally {
    closeSync(fd)
  }
}

async function waitReady(p: StateEntry, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!isAlive(p.pid)) {
      const tail = await readFile(p.log, 'utf8').catch(() => '')
      throw new ShoalError(
        'UNAVAILABLE',
        `${p.name} exited during start-up: ${tail.trim().split('\n').slice(-3).join(' | ') || `see ${p.log}`}`,
      )
    }
    if (await isReady(p.readyUrl)) return
    await sleep(100)
  }
  throw new ShoalError('TIMEOUT', `${p.name} was not ready within ${timeoutMs / 1000} s; see ${p.log}`)
}

/** Undefined when `url` answers GET /health with 200, else why not, short ("ECONNREFUSED"). */
async function healthFailure(url: string): Promise<string | undefined> {
  try {
    const code = await new HttpClient(url, { name: 'devcluster', timeoutMs: HEALTH_TIMEOUT_MS }).status(
      'GET',
      '/health',
      { accept: [404, 500, 502, 503, 504], signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) },
    )
    return code === 200 ? undefined : `HTTP ${code}`
  } catch (err) {
    if (isShoalError(err) && err.code === 'TIMEOUT') return `no answer within ${HEALTH_TIMEOUT_MS / 1000} s`
    return errnoOf(err) ?? (err as Error).message
  }
}

/** The first errno-like code ("ECONNREFUSED") on an error or its causes. */
function errnoOf(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code
  }
  return undefined
}

const hostOf = (url: string) => url.replace(/^https?:\/\//, '')

async function isReady(url: string): Promise<boolean> {
  try {
    return (
      (await new HttpClient(url, { name: 'devcluster', timeoutMs: 2000 }).status('GET', '/readiness')) === 200
    )
  } catch {
    return false
  }
}

/**
 * True when `pid` runs and is one of ours: after a reboot or crash a recorded pid may belong to
 * an unrelated process, which `down` must never signal. On Linux the command line must name
 * the shoal entry point; elsewhere only liveness can be checked.
 */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('/cmd/shoal.js')
  } catch {
    return process.platform !== 'linux'
  }
}

async function readState(workdir: string): Promise<ClusterState | undefined> {
  try {
    return JSON.parse(await readFile(stateFile(workdir), 'utf8')) as ClusterState
  } catch {
    return undefined
  }
}

async function writeState(state: ClusterState): Promise<void> {
  await writeFile(stateFile(state.workdir), `${JSON.stringify(state, null, 2)}\n`)
}
