/**
 * How a client speaks: on a terminal a progress bar on stderr (redrawn at most ~10 times a
 * second, so a fast pull does not spend its time drawing), then one result line on stdout;
 * on a pipe only the result; `--quiet` nothing but errors; `--json` exactly one JSON object on
 * stdout and nothing else there (errors: runCli prints `{ error, exitCode }`).
 */
import { formatBytes } from '../core/index.js'
import { type ClientSettings, DEFAULT_CLIENT_CONFIG, loadClientSettings } from './client-config.js'
import type { Command } from './commander.js'
import type { Output } from './common.js'
import type { Lister } from './resolve-name.js'

export interface ProgressInfo {
  bytes: number
  /** -1 or undefined until known. */
  total?: number
  /** What is moving: 'hashing', 'uploading', 'swarm', 'copy', 'waiting for flag'. */
  phase?: string
  peers?: number
  bytesFromOrigins?: number
  bytesFromAgents?: number
}

export interface ReporterOptions {
  json?: boolean
  quiet?: boolean
  /** Milliseconds between two redraws at most (100: ~10/s). */
  redrawMs?: number
  now?: () => number
}

export class Reporter {
  private lastDraw = 0
  private drawn = false
  private readonly started: number
  private readonly now: () => number
  private phase: string | undefined
  private phaseStart = 0

  constructor(
    private readonly io: Output,
    private readonly opts: ReporterOptions = {},
  ) {
    this.now = opts.now ?? Date.now
    this.started = this.now()
  }

  get json(): boolean {
    return this.opts.json === true
  }

  /** A progress bar is drawn only on a terminal, and never with --quiet or --json. */
  get drawsProgress(): boolean {
    return this.io.status !== undefined && !this.opts.quiet && !this.opts.json
  }

  /** The callback handed to push()/pull(): cheap when nothing is drawn. */
  readonly progress = (p: ProgressInfo): void => {
    if (!this.drawsProgress) return
    const now = this.now()
    if (p.phase !== this.phase) {
      this.phase = p.phase
      this.phaseStart = now
    } else {
      const done = p.total !== undefined && p.total >= 0 && p.bytes >= p.total
      if (!done && now - this.lastDraw < (this.opts.redrawMs ?? 100)) return
    }
    this.lastDraw = now
    this.drawn = true
    this.io.status?.(progressLine(p, (now - this.phaseStart) / 1000))
  }

  /** A remark on stderr (a fallback taken, a flag waited for): not with --quiet or --json. */
  note(line: string): void {
    if (this.opts.quiet || this.opts.json) return
    this.clear()
    this.io.err(line)
  }

  /** The one result: the JSON object with --json, else the human lines unless --quiet. */
  result(value: Record<string, unknown>, human: string[]): void {
    this.clear()
    if (this.opts.json) this.io.out(JSON.stringify(value))
    else if (!this.opts.quiet) for (const line of human) this.io.out(line)
  }

  seconds(): number {
    return (this.now() - this.started) / 1000
  }

  /** Ends the progress line so the next line starts clean. */
  clear(): void {
    if (!this.drawn) return
    this.drawn = false
    this.io.status?.('')
  }
}

const BAR = 24

/** `[#######.........]  42%  1.2 GiB / 2.9 GiB  85.3 MiB/s  ETA 20 s  (swarm, 3 peers)` */
export function progressLine(p: ProgressInfo, elapsedSeconds: number): string {
  const known = p.total !== undefined && p.total > 0
  const frac = known ? Math.min(1, p.bytes / (p.total as number)) : 0
  const rate = elapsedSeconds > 0 ? p.bytes / elapsedSeconds : 0
  const parts: string[] = []
  if (known) {
    const filled = Math.round(frac * BAR)
    parts.push(
      `[${'#'.repeat(filled)}${'.'.repeat(BAR - filled)}]`,
      `${String(Math.floor(frac * 100)).padStart(3)}%`,
    )
    parts.push(`${formatBytes(p.bytes)} / ${formatBytes(p.total as number)}`)
  } else parts.push(formatBytes(p.bytes))
  if (rate > 0) parts.push(`${formatBytes(Math.round(rate))}/s`)
  if (known && rate > 0 && frac < 1) parts.push(`ETA ${eta(((p.total as number) - p.bytes) / rate)}`)
  const extra = [
    p.phase,
    p.peers !== undefined ? `${p.peers} peer${p.peers === 1 ? '' : 's'}` : '',
    p.bytesFromAgents !== undefined || p.bytesFromOrigins !== undefined
      ? `from agents ${formatBytes(p.bytesFromAgents ?? 0)}, origins ${formatBytes(p.bytesFromOrigins ?? 0)}`
      : '',
  ].filter(Boolean)
  if (extra.length) parts.push(`(${extra.join(', ')})`)
  return parts.join('  ')
}

function eta(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?'
  const s = Math.ceil(seconds)
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
}

/** --config, --json, --quiet: on every client command. */
export function addClientOptions(cmd: Command): Command {
  return cmd
    .option('--config <file>', `client config file (default: $SHOAL_CONFIG, else ${DEFAULT_CLIENT_CONFIG})`)
    .option('--json', 'print one JSON object with the result (or the error) on stdout, nothing else')
    .option('--quiet', 'print nothing but errors')
}

/** What a program's tests (and the lead's wiring) can swap: listings, environment, default config. */
export interface ClientDeps {
  /** The agent's tag listing (PullCLI NAME); default: AgentClient.list. */
  agentLister?: (agent: string) => Lister
  /** The proxy's tag listing (RemoveCLI NAME); default: ProxyClient.list. */
  proxyLister?: (proxy: string) => Lister
  env?: NodeJS.ProcessEnv
  /** The config read when neither --config nor SHOAL_CONFIG names one. */
  defaultConfigFile?: string
}

export interface ClientFlags {
  config?: string
  json?: boolean
  quiet?: boolean
}

/** The settings (file, environment) and the reporter (--json, --quiet, terminal) of one run. */
export function startClient(
  io: Output,
  flags: ClientFlags,
  deps: ClientDeps,
): { settings: ClientSettings; reporter: Reporter } {
  const settings = loadClientSettings({
    file: flags.config,
    env: deps.env,
    defaultFile: deps.defaultConfigFile,
  })
  return { settings, reporter: new Reporter(io, { json: flags.json, quiet: flags.quiet }) }
}
