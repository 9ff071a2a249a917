/**
 * Origins as separate processes (the built `shoal origin`, dist/cmd/shoal.js), for fault tests
 * that must SIGKILL one: each gets a config file written from an object, its own log file, and
 * is awaited until /readiness answers 200 (via test/helpers/daemon-procs.ts). Every process still
 * running when the test ends is stopped (SIGTERM, SIGKILL after a grace period) by its pid.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { stringify } from 'yaml'
import { freePort } from '../../lib/herd/index.js'
import { type DaemonProc, startDaemonProc } from './daemon-procs.js'

export interface OriginProc extends Omit<DaemonProc, 'stop'> {
  /** host:port of its HTTP API, as the ring names it. */
  http: string
  /** host:port of its BitTorrent listener. */
  peer: string
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
  const proc = await startDaemonProc(
    t,
    dir,
    name,
    ['origin', '--config', file],
    `http://${addr.http}`,
    readyMs,
  )
  return Object.defineProperties(
    { name, http: addr.http, peer: addr.peer, log: proc.log, child: proc.child, exited: proc.exited },
    { alive: { get: () => proc.alive, enumerable: true } },
  ) as OriginProc
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
