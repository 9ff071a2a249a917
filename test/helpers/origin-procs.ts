/**
 * Origins as separate processes (the built `shoal origin`, dist/cmd/shoal.js), for fault tests
 * that must SIGKILL one: each gets a config file written from an object, its own log file, and
 * is awaited until /readiness answers 200. Every process still running when the test ends is
 * stopped (SIGTERM, SIGKILL after a grace period) by its pid.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { stringify } from 'yaml'
import { builtBinary } from '../../lib/devcluster/layout.js'
import { freePort } from '../../lib/herd/index.js'

export interface OriginProc {
  name: string
  /** host:port of its HTTP API, as the ring names it. */
  http: string
  /** host:port of its BitTorrent listener. */
  peer: string
  log: string
  child: ChildProcess
  /** Resolves once the process is gone. */
  exited: Promise<void>
  readonly alive: boolean
}

/**
 * Free ports for `n` origins' HTTP and peer listeners. A separate process cannot take over a
 * listener this process bound, so these are ports free a moment ago (lib/herd freePort).
 */
export async function originAddresses(n: number): Promise<{ http: string; peer: string }[]> {
  const out: { http: string; peer: string }[] = []
  const seen = new Set<number>()
  while (out.length < n) {
    const [h, p] = [await freePort(), await freePort()]
    if (h === p || seen.has(h) || seen.has(p)) continue
    seen.add(h)
    seen.add(p)
    out.push({ http: `127.0.0.1:${h}`, peer: `127.0.0.1:${p}` })
  }
  return out
}

/**
 * Starts `shoal origin --config <dir>/<name>.yaml` with `config` (an origin config object; its
 * server and peer ports come from `addr`) and waits until it is ready.
 */
export async function startOriginProc(
  t: { teardown(fn: () => unknown): void },
  dir: string,
  name: string,
  addr: { http: string; peer: string },
  config: Record<string, unknown>,
  readyMs = 30_000,
): Promise<OriginProc> {
  const file = join(dir, `${name}.yaml`)
  const port = (hostPort: string) => Number(hostPort.split(':')[1])
  const peer = (config.peer as Record<string, unknown> | undefined) ?? {}
  const server = (config.server as Record<string, unknown> | undefined) ?? {}
  await writeFile(
    file,
    stringify(
      {
        log: { level: 'info' },
        ...config,
        server: { ...server, host: '127.0.0.1', port: port(addr.http) },
        peer: { ...peer, host: '127.0.0.1', port: port(addr.peer) },
        self: addr.http,
      },
      { aliasDuplicateObjects: false },
    ),
  )
  const log = join(dir, `${name}.log`)
  const fd = openSync(log, 'a')
  let child: ChildProcess
  try {
    child = spawn(process.execPath, [builtBinary('shoal'), 'origin', '--config', file], {
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
  const proc: OriginProc = {
    name,
    http: addr.http,
    peer: addr.peer,
    log,
    child,
    exited,
    get alive() {
      return alive
    },
  }
  t.teardown(async () => {
    if (!alive) return
    child.kill('SIGTERM')
    await Promise.race([exited, sleep(10_000)])
    if (alive) child.kill('SIGKILL')
    await exited
  })
  const deadline = Date.now() + readyMs
  for (;;) {
    if (!alive) {
      const tail = (await readFile(log, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' | ')
      throw new Error(`${name} exited during start-up: ${tail}`)
    }
    const ok = await fetch(`http://${addr.http}/readiness`).then(
      (r) => r.status === 200,
      () => false,
    )
    if (ok) return proc
    if (Date.now() > deadline) throw new Error(`${name} was not ready within ${readyMs} ms; see ${log}`)
    await sleep(100)
  }
}

/** Polls `check` until it returns true; throws naming `what` after `ms`. */
export async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  ms = 30_000,
): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await Promise.resolve(check()).catch(() => false)) return
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await sleep(50)
  }
}
