/**
 * Daemons as separate processes of the built `shoal` binary (dist/cmd/shoal.js): each with its
 * own log file, awaited until its /readiness answers 200, stopped (SIGTERM, SIGKILL after a
 * grace period) by its pid when asked or when the test ends.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { builtBinary } from '../../lib/devcluster/layout.js'

export interface DaemonProc {
  name: string
  log: string
  child: ChildProcess
  /** Resolves once the process is gone. */
  exited: Promise<void>
  readonly alive: boolean
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>
}

export async function startDaemonProc(
  t: { teardown(fn: () => unknown): void },
  dir: string,
  name: string,
  args: string[],
  readyUrl: string,
  readyMs = 30_000,
): Promise<DaemonProc> {
  const log = join(dir, `${name}.log`)
  const fd = openSync(log, 'a')
  let child: ChildProcess
  try {
    child = spawn(process.execPath, [builtBinary('shoal'), ...args], {
      stdio: ['ignore', fd, fd],
      env: process.env,
    })
  } finally {
    closeSync(fd)
  }
  let alive = true
  const exited = new Promise<void>((res) => child.once('exit', () => res()))
  exited.then(() => {
    alive = false
  })
  const proc: DaemonProc = {
    name,
    log,
    child,
    exited,
    get alive() {
      return alive
    },
    async stop(graceMs = 10_000) {
      if (!alive) return
      child.kill('SIGTERM')
      await Promise.race([exited, sleep(graceMs)])
      if (alive) child.kill('SIGKILL')
      await exited
    },
  }
  t.teardown(() => proc.stop())
  const deadline = Date.now() + readyMs
  for (;;) {
    if (!alive) {
      const tail = (await readFile(log, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' | ')
      throw new Error(`${name} exited during start-up: ${tail}`)
    }
    const ok = await fetch(`${readyUrl}/readiness`).then(
      (r) => r.status === 200,
      () => false,
    )
    if (ok) return proc
    if (Date.now() > deadline) throw new Error(`${name} was not ready within ${readyMs} ms; see ${log}`)
    await sleep(100)
  }
}
