/**
 * aria2c (Debian package `aria2`) as a stock BitTorrent client in tests: spawn it with the flags
 * that keep it on our tracker only, collect its output, and make sure it is gone when the test
 * ends. See docs/interop.md for the command lines and what they showed.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'

export const ARIA2C = process.env.ARIA2C ?? 'aria2c'

/**
 * Flags every run uses: no DHT, LPD or PEX (the tracker is the only source of peers, as with
 * private torrents), no preallocation, quiet console, seeding ends at once unless the caller
 * overrides it, and a short tracker connect timeout so a broken tracker fails fast.
 */
export const ARIA2_BASE_FLAGS = [
  '--enable-dht=false',
  '--enable-dht6=false',
  '--bt-enable-lpd=false',
  '--enable-peer-exchange=false',
  '--file-allocation=none',
  '--summary-interval=0',
  '--console-log-level=warn',
  '--bt-tracker-connect-timeout=5',
  '--bt-tracker-timeout=5',
  '--no-conf=true',
  '--allow-overwrite=true',
  '--auto-file-renaming=false',
] as const

let available: boolean | undefined

/** Whether aria2c runs here (checked once). */
export function aria2Available(): boolean {
  available ??= spawnSync(ARIA2C, ['--version'], { stdio: 'ignore' }).status === 0
  return available
}

export interface Aria2Run {
  readonly proc: ChildProcess
  /** When spawn() was called (ms since the epoch). */
  readonly startedAt: number
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>
  /** stdout and stderr so far (the last 64 KiB), for failure messages. */
  output(): string
  /** SIGTERM, then SIGKILL after 2 s; resolves when the process is gone. Idempotent. */
  stop(): Promise<void>
}

const MAX_OUTPUT = 64 << 10

/** Spawns aria2c with ARIA2_BASE_FLAGS + args; it is stopped when the test ends. */
export function startAria2(t: { teardown(fn: () => unknown): void }, args: string[]): Aria2Run {
  const startedAt = Date.now()
  const proc = spawn(ARIA2C, [...ARIA2_BASE_FLAGS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const collect = (chunk: Buffer) => {
    out += chunk.toString('utf8')
    if (out.length > MAX_OUTPUT) out = out.slice(-MAX_OUTPUT)
  }
  proc.stdout?.on('data', collect)
  proc.stderr?.on('data', collect)
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code) => resolve(code))
    proc.once('error', (err) => {
      collect(Buffer.from(`spawn error: ${err.message}\n`))
      resolve(-1)
    })
  })
  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return
      proc.kill('SIGTERM')
      const timer = setTimeout(() => proc.kill('SIGKILL'), 2000)
      timer.unref()
      await exited
      clearTimeout(timer)
    })()
    return stopping
  }
  t.teardown(stop)
  return { proc, startedAt, exited, output: () => out, stop }
}

/** Resolves with the exit code, or rejects (after stopping aria2c) when it takes longer than ms. */
export async function waitExit(run: Aria2Run, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`aria2c still running after ${ms} ms:\n${run.output()}`)), ms)
  })
  try {
    return await Promise.race([run.exited, timeout])
  } catch (err) {
    await run.stop()
    throw err
  } finally {
    clearTimeout(timer)
  }
}

/** Polls until `check` returns true (or throws after ms). */
export async function until(
  check: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/**
 * Time from `run.startedAt` to the first block aria2c received (ms), from its log
 * (`--log=FILE --log-level=info` or debug): each received block is a line
 * "<local time with µs> [INFO] ... CUID#n - From: ip:port piece index=..., begin=...".
 * undefined when the log has no such line.
 */
export async function firstBlockMs(run: Aria2Run, logFile: string): Promise<number | undefined> {
  const text = await readFile(logFile, 'utf8').catch(() => '')
  for (const line of text.split('\n')) {
    if (!/ piece index=/.test(line) || !/ From: /.test(line)) continue
    const at = logTime(line)
    if (at !== undefined) return at - run.startedAt
  }
  return undefined
}

/** The time of an aria2 log line ("2025-01-31 12:34:56.789012 [DEBUG] ..."), local time. */
export function logTime(line: string): number | undefined {
  const m = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6})/.exec(line)
  if (!m) return undefined
  const [, y, mo, d, h, mi, s, us] = m.map(Number) as number[]
  return new Date(y!, mo! - 1, d!, h!, mi!, s!, Math.floor(us! / 1000)).getTime()
}

/** A TCP port free right now on 127.0.0.1 (aria2c needs one named up front, ≥ 1024). */
export function freeListenPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolve(port))
    })
  })
}
