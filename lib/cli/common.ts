/** What every CLI shares: defaults, one-line errors, and the exit code policy. */
import { hostname, networkInterfaces } from 'node:os'
import { isShoalError, toShoalError } from '../errors/index.js'
import { type Command, CommanderError } from './commander.js'

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
 * Runs a commander program: user mistakes and remote errors become one clear line on stderr
 * and exit code 1 (2 for usage errors); only real bugs keep their stack, behind SHOAL_DEBUG.
 */
export async function runCli(program: Command, argv: string[], io: Output = stdio): Promise<number> {
  // Subcommands copy these settings only when created, so apply them to the whole tree.
  const apply = (cmd: Command) => {
    cmd.exitOverride()
    cmd.configureOutput({ writeErr: (s) => io.err(s.trimEnd()), writeOut: (s) => io.out(s.trimEnd()) })
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
    return 1
  }
}

export function parseSeconds(value: string): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0)
    throw new CommanderError(2, 'shoal.invalidArgument', `invalid number of seconds: ${value}`)
  return n
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`
}
