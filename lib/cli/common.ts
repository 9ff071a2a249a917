/** What every CLI shares: defaults, one-line errors, and the exit code policy. */
import { hostname, networkInterfaces } from 'node:os'
import { type ErrorCode, isShoalError, ShoalError, toShoalError } from '../errors/index.js'
import { type Command, CommanderError } from './commander.js'

export { formatBytes } from '../core/index.js'

export const DEFAULT_PROXY = '127.0.0.1:15000'
export const DEFAULT_AGENT = '127.0.0.1:16002'

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
}

export const stdio: Output = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
}

/**
 * Exit codes: 0 success, 1 a failure, 2 a usage error, and these for failures a script may
 * want to tell apart. 124 is what timeout(1) exits with when its deadline passes.
 */
export const EXIT_CODES: Partial<Record<ErrorCode, number>> = { TIMEOUT: 124 }

/**
 * Runs a commander program: user mistakes and remote errors become one clear line on stderr
 * and exit code 1 (EXIT_CODES, 2 for usage errors); only real bugs keep their stack, behind
 * SHOAL_DEBUG.
 */
export async function runCli(program: Command, argv: string[], io: Output = stdio): Promise<number> {
  // Subcommands copy these settings only when created, so apply them to the whole tree.
  const apply = (cmd: Command) => {
    cmd.exitOverride()
    cmd.configureOutput({
      writeErr: (s) => io.err(s.trimEnd()),
      writeOut: (s) => io.out(s.trimEnd()),
      // A usage error is one line naming the binary, as every other error is.
      outputError: (s) => io.err(`${program.name()}: ${usageLine(s)}`),
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
      return err.exitCode === 0 ? 0 : 2
    }
    const e = toShoalError(err)
    io.err(`${program.name()}: ${e.message}`)
    if (process.env.SHOAL_DEBUG && !isShoalError(err)) io.err(String((err as Error).stack))
    return EXIT_CODES[e.code] ?? 1
  }
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

export function parseSeconds(value: string): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0)
    throw new CommanderError(2, 'shoal.invalidArgument', `invalid number of seconds: ${value}`)
  return n
}
