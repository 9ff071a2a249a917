/** What every CLI shares: defaults, one-line errors, and the exit code policy. */
import { existsSync, readFileSync } from 'node:fs'
import { hostname, networkInterfaces } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type ErrorCode, isShoalError, ShoalError, toShoalError } from '../errors/index.js'
import { type Command, CommanderError, InvalidArgumentError } from './commander.js'

export { formatBytes } from '../core/index.js'

export const DEFAULT_PROXY = '127.0.0.1:15000'
export const DEFAULT_AGENT = '127.0.0.1:16002'
/** The herd's resource API (basePort 15000 + 6). */
export const DEFAULT_APISERVER = '127.0.0.1:15006'

/** The first non-internal IPv4 address, else the host name: the seed's "source host IP". */
export function defaultSrcHost(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  return hostname()
}

export interface Output {
  out(line: string): void
  err(line: string): void
  /**
   * Redraws the one transient status line (the progress bar) on stderr. Only an Output on a
   * terminal has it: on a pipe or in a test nothing but the result is written.
   */
  status?(line: string): void
}

export const stdio: Output = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  ...(process.stderr.isTTY
    ? { status: (line: string) => process.stderr.write(`\r${line.slice(0, columns() - 1)}\x1b[K`) }
    : {}),
}

function columns(): number {
  return process.stderr.columns || 80
}

/**
 * Exit codes by error code: a script tells "not found" from "timed out" from "the cluster is
 * down" without reading the message. 0 success, 1 anything else, 2 usage. 124 is what
 * timeout(1) exits with when its deadline passes. The one table: --help, docs/clients.md,
 * docs/errors.md and the README print it.
 */
export const EXIT_CODES: Partial<Record<ErrorCode, number>> = {
  USAGE: 2,
  INVALID_TAG: 2,
  TAG_NOT_FOUND: 3,
  BLOB_NOT_FOUND: 3,
  NOT_FOUND: 3,
  TAG_CONFLICT: 4,
  ALREADY_EXISTS: 4,
  DIGEST_MISMATCH: 5,
  BAD_MANIFEST: 5,
  SIZE_MISMATCH: 5,
  BLOB_CORRUPT: 5,
  UNAVAILABLE: 6,
  CSGW_UNAVAILABLE: 6,
  UPSTREAM_ERROR: 6,
  UPSTREAM_REFUSED: 6,
  BACKEND_ERROR: 6,
  INVALID_PATH: 7,
  IO_ERROR: 7,
  INSUFFICIENT_STORAGE: 7,
  FORBIDDEN: 8,
  UNAUTHORIZED: 8,
  CSGW_AUTH: 8,
  CSGW_REFUSED: 8,
  TIMEOUT: 124,
}

/** What each exit code means, for --help and the docs. */
export const EXIT_CODE_MEANINGS: ReadonlyArray<readonly [number, string]> = [
  [0, 'success'],
  [1, 'any other failure'],
  [
    2,
    'usage: a bad flag or value (an invalid tag), a missing argument, an ambiguous NAME, an invalid client config',
  ],
  [3, 'not found: the tag, the blob or the CSGW file does not exist'],
  [4, 'conflict: an immutable version already points at other content'],
  [5, 'verification failed: the bytes do not match the digest or size'],
  [6, 'unavailable: a daemon, the CSGW or the storage behind them cannot serve now'],
  [7, 'local I/O: an invalid or unwritable path, a full disk'],
  [8, 'refused: forbidden or unauthorized (a missing token), or the CSGW refused the login or the operation'],
  [124, 'timeout: --timeout seconds passed without progress'],
]

export function exitCodeFor(code: ErrorCode): number {
  return EXIT_CODES[code] ?? 1
}

/** The exit code table as --help shows it. */
export function exitCodesHelp(): string {
  return `\nExit codes:\n${EXIT_CODE_MEANINGS.map(([n, what]) => `  ${String(n).padStart(3)}  ${what}`).join('\n')}\n`
}

/**
 * Runs a commander program: user mistakes and remote errors become one clear line on stderr
 * and the exit code of EXIT_CODES (2 for usage errors); only real bugs keep their stack, behind
 * SHOAL_DEBUG. With `--json` among the arguments a failure is also one JSON object on stdout,
 * `{ error: { code, message }, exitCode }`, so a script reads every outcome the same way.
 */
export async function runCli(program: Command, argv: string[], io: Output = stdio): Promise<number> {
  const json = wantsJson(argv.slice(2))
  let usageMessage: string | undefined
  // Subcommands copy these settings only when created, so apply them to the whole tree.
  const apply = (cmd: Command) => {
    cmd.exitOverride()
    cmd.configureOutput({
      writeErr: (s) => io.err(s.trimEnd()),
      writeOut: (s) => io.out(s.trimEnd()),
      // A usage error is one line naming the binary, as every other error is.
      outputError: (s) => {
        usageMessage = usageLine(s)
        io.err(`${program.name()}: ${usageMessage}`)
      },
    })
    for (const sub of cmd.commands) apply(sub)
  }
  apply(program)
  try {
    await program.parseAsync(argv)
    return 0
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit with code 0; commander already printed the message.
      if (err.exitCode === 0) return 0
      if (json) printJson(io, 'USAGE', usageMessage ?? usageLine(err.message), 2)
      return 2
    }
    const e = toShoalError(err)
    const exitCode = exitCodeFor(e.code)
    io.err(`${program.name()}: ${e.message}`)
    if (process.env.SHOAL_DEBUG && !isShoalError(err)) io.err(String((err as Error).stack))
    if (json) printJson(io, e.code, e.message, exitCode, e.details?.result)
    return exitCode
  }
}

/** `result`: what a command that failed still has to report (a job's per-target table). */
function printJson(io: Output, code: string, message: string, exitCode: number, result?: unknown): void {
  io.out(JSON.stringify({ error: { code, message }, exitCode, ...(result !== undefined ? { result } : {}) }))
}

/** `--json` before a `--` terminator: the failure answer must be JSON even for a usage error. */
function wantsJson(args: string[]): boolean {
  const end = args.indexOf('--')
  return (end < 0 ? args : args.slice(0, end)).includes('--json')
}

/** commander's "error: unknown option '--x'\n(Did you mean --y?)" as one line without "error: ". */
function usageLine(message: string): string {
  return message
    .trim()
    .replace(/^error: /, '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' ')
}

/**
 * The entry point of every binary in cmd/: runs the program on process.argv and sets the exit
 * code (2 for a usage error). A daemon that is up keeps the process alive after this returns;
 * one that failed to start has set a non-zero exit code itself, which is kept.
 */
export async function main(program: Command): Promise<void> {
  const code = await runCli(program, process.argv)
  if (code !== 0) process.exitCode = code
}

/**
 * Runs `work` under the user's `--timeout` (none: no deadline). Once the deadline has passed,
 * whatever the work failed with (an aborted request, a hash cut short) is reported as TIMEOUT
 * "<what> timed out after N s", with what it was still waiting for when the client said so.
 */
export async function withTimeout<T>(
  what: string,
  seconds: number | undefined,
  work: (signal: AbortSignal | undefined) => Promise<T>,
): Promise<T> {
  if (!seconds) return work(undefined)
  const signal = AbortSignal.timeout(seconds * 1000)
  try {
    return await work(signal)
  } catch (err) {
    if (!signal.aborted) throw err
    const e = toShoalError(err)
    const waiting = e.code === 'TIMEOUT' && e.message !== 'operation timed out' ? ` (${e.message})` : ''
    throw new ShoalError('TIMEOUT', `${what} timed out after ${seconds} s${waiting}`, {
      cause: err,
      details: { timeoutSeconds: seconds },
    })
  }
}

/**
 * A client's own timeout for waiting on an answer, when the user gave `--timeout`: a little
 * longer than that, so the user's deadline is the one that fires and names itself.
 */
export function clientTimeoutMs(seconds: number | undefined, fallbackMs: number): number {
  return seconds ? seconds * 1000 + 1000 : fallbackMs
}

/** `--timeout`: seconds ≥ 0, 0 = none. A bad value is commander's one-line usage error, exit 2. */
export function parseSeconds(value: string): number {
  const n = value.trim() === '' ? Number.NaN : Number(value)
  if (!Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError('expected a number of seconds, 0 or more (0 = no timeout)')
  return n
}

/** A flag value from a fixed set, matched without regard to case; returns the canonical spelling. */
export function oneOf<T extends string>(...choices: T[]): (value: string) => T {
  return (value) => {
    const hit = choices.find((c) => c.toLowerCase() === value.trim().toLowerCase())
    if (hit === undefined) throw new InvalidArgumentError(`expected one of ${choices.join(', ')}`)
    return hit
  }
}

/** `--is-cover true|false` as a boolean. */
export const parseBool = (value: string): boolean => oneOf('true', 'false')(value) === 'true'

/** A USAGE error: one line, exit 2. */
/** --apiserver and (with `tokenFile`) --token-file, as every command of the resource API takes them. */
export function apiServerOptions(cmd: Command, opts: { tokenFile: boolean }): Command {
  cmd.option(
    '--apiserver <host:port>',
    "the herd's resource API (default: $SHOAL_APISERVER, the config's apiserver, 127.0.0.1:15006)",
  )
  if (opts.tokenFile)
    cmd.option('--token-file <file>', "an API token (default: $SHOAL_TOKEN_FILE, the config's tokenFile)")
  return cmd
}

export function usage(message: string): ShoalError {
  return new ShoalError('USAGE', message)
}

let cachedVersion: string | undefined

/** The software's version, from package.json (found walking up from this file: tsx or dist/). */
export function softwareVersion(): string {
  if (cachedVersion) return cachedVersion
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'shoal' && pkg.version) {
        cachedVersion = pkg.version
        return cachedVersion
      }
    }
    dir = dirname(dir)
  }
  return '0.0.0'
}
