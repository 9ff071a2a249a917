/**
 * `shoal devcluster up|status|down`: a herd and N agents as separate processes on the ports of
 * docs/architecture.md §3, each with its data and one log file under a work folder.
 */
import { spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ShoalError } from '../errors/index.js'
import { HttpClient } from '../http/index.js'
import { builtBinary, clusterLayout, type ProcessSpec } from './layout.js'

export const DEFAULT_WORKDIR = '.shoal/devcluster'

interface StateEntry {
  name: string
  pid: number
  readyUrl: string
  ports: Record<string, number>
  log: string
}

export interface ClusterState {
  workdir: string
  startedAt: string
  processes: StateEntry[]
}

export interface ProcessStatus extends StateEntry {
  alive: boolean
  ready: boolean
}

const stateFile = (workdir: string) => join(workdir, 'devcluster.json')

export async function up(
  opts: {
    workdir?: string
    agents?: number
    readyTimeoutMs?: number
    basePort?: number
    agentBasePort?: number
  } = {},
): Promise<ClusterState> {
  const workdir = resolve(opts.workdir ?? DEFAULT_WORKDIR)
  const existing = await readState(workdir)
  if (existing?.processes.some((p) => isAlive(p.pid))) {
    throw new ShoalError(
      'ALREADY_EXISTS',
      `a devcluster is already running from ${workdir}; run "shoal devcluster down" first`,
    )
  }
  const layout = clusterLayout(workdir, opts.agents ?? 3, opts.basePort, opts.agentBasePort)
  await mkdir(join(workdir, 'logs'), { recursive: true })
  const entry = builtBinary('shoal')
  const state: ClusterState = { workdir, startedAt: new Date().toISOString(), processes: [] }
  try {
    for (const spec of [layout.herd, ...layout.agents]) {
      state.processes.push(launch(entry, spec, workdir))
      await writeState(state)
      // The herd must be up before agents re-seed and announce.
      if (spec === layout.herd)
        await waitReady(state.processes[0] as StateEntry, opts.readyTimeoutMs ?? 30_000)
    }
    for (const p of state.processes.slice(1)) await waitReady(p, opts.readyTimeoutMs ?? 30_000)
  } catch (err) {
    await down({ workdir })
    throw err
  }
  return state
}

export async function status(opts: { workdir?: string } = {}): Promise<ProcessStatus[]> {
  const state = await readState(resolve(opts.workdir ?? DEFAULT_WORKDIR))
  if (!state) return []
  return Promise.all(
    state.processes.map(async (p) => ({
      ...p,
      alive: isAlive(p.pid),
      ready: isAlive(p.pid) && (await isReady(p.readyUrl)),
    })),
  )
}

/** Stops agents first, then the herd: SIGTERM, then SIGKILL after a grace period. Idempotent. */
export async function down(opts: { workdir?: string; graceMs?: number } = {}): Promise<number> {
  const workdir = resolve(opts.workdir ?? DEFAULT_WORKDIR)
  const state = await readState(workdir)
  if (!state) return 0
  let stopped = 0
  for (const p of [...state.processes].reverse()) {
    if (!isAlive(p.pid)) continue
    process.kill(p.pid, 'SIGTERM')
    const deadline = Date.now() + (opts.graceMs ?? 10_000)
    while (isAlive(p.pid) && Date.now() < deadline) await sleep(50)
    if (isAlive(p.pid)) process.kill(p.pid, 'SIGKILL')
    stopped++
  }
  await rm(stateFile(workdir), { force: true })
  return stopped
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
    return { name: spec.name, pid: child.pid, readyUrl: spec.readyUrl, ports: spec.ports, log }
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
