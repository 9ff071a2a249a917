/**
 * Shared start-up for every daemon binary: load and validate config, create the root logger,
 * start the daemon's parts (lib/lifecycle startAll), and stop them in reverse on SIGINT/SIGTERM.
 * A bad config or a taken port is one clear line and exit code 1, never a stack trace, and a
 * start that fails leaves nothing open: the parts already started are stopped again, so the
 * process exits. A signal during start-up aborts it the same way, and the process exits 0.
 */

import { type LoadConfigOptions, loadConfig, type ZodType } from '../config/index.js'
import { ShoalError, toShoalError } from '../errors/index.js'
import { type Service, type Stopper, startAll } from '../lifecycle/index.js'
import { createLogger, flushLogSync, type Logger } from '../log/index.js'
import { type Command, InvalidArgumentError } from './commander.js'

export interface DaemonSpec<C extends { log: { level: string; file?: string | undefined } }> {
  name: string
  component: string
  schema: ZodType<C>
  overrides: (flags: Record<string, unknown>) => Record<string, unknown>
  /** The daemon, not started yet: runDaemon starts it (and stops it again when its start fails). */
  create: (config: C, logger: Logger) => Service
  /** Prefix of the line on stderr (default: name), e.g. "shoal agent" for a subcommand. */
  label?: string
}

/** Options every daemon accepts; each binary adds its own port flags. */
export function addDaemonOptions(cmd: Command): Command {
  return cmd
    .option(
      '--config <file>',
      'YAML config file (default: config/<component>/<env>.yaml, which extends base.yaml)',
    )
    .option('--env <name>', 'environment whose config file to load (default: $SHOAL_ENV or development)')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace')
    .option('--log-file <file>', 'append JSON logs to this file instead of stdout')
}

export async function runDaemon<C extends { log: { level: string; file?: string | undefined } }>(
  spec: DaemonSpec<C>,
  flags: Record<string, unknown>,
): Promise<void> {
  const label = spec.label ?? spec.name
  let config: C
  const opts: LoadConfigOptions = {
    component: spec.component,
    file: flags.config as string | undefined,
    env: flags.env as string | undefined,
    overrides: { ...spec.overrides(flags), log: { level: flags.logLevel, file: flags.logFile } },
  }
  try {
    config = loadConfig(spec.schema, opts)
  } catch (err) {
    process.stderr.write(`${label}: ${toShoalError(err).message}\n`)
    process.exitCode = 1
    return
  }
  const logger = createLogger({
    name: spec.name,
    level: config.log.level as never,
    destination: config.log.file,
  })
  exitOnFatal(label, logger)
  const starting = new AbortController()
  let running: Stopper | undefined
  let stopping = false
  const shutdown = (signal: string) => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, `${spec.name} stopping`)
    starting.abort(new ShoalError('ABORTED', `${spec.name} start-up interrupted by ${signal}`))
    running?.stop().then(
      () => {
        logger.info({ signal }, 'shutdown complete')
        logger.flush?.()
      },
      (err) => {
        logger.error({ err: toShoalError(err).message }, 'error while stopping')
        process.exitCode = 1
      },
    )
  }
  process.once('SIGINT', () => shutdown('SIGINT'))
  process.once('SIGTERM', () => shutdown('SIGTERM'))
  try {
    running = await startAll([spec.create(config, logger)], starting.signal)
  } catch (err) {
    if (starting.signal.aborted) {
      logger.info('stopped before it finished starting')
      logger.flush?.()
      return
    }
    const e = toShoalError(err)
    logger.fatal({ code: e.code, err: e.message }, `${spec.name} failed to start`)
    flushLogSync(logger)
    process.stderr.write(`${label}: ${e.message}\n`)
    process.exitCode = 1
  }
}

/**
 * A programming error that escaped every handler leaves the process in a state nobody
 * reasoned about: log it with its stack (to the log file when there is one), say so on
 * stderr in one line, and exit non-zero so the supervisor restarts a clean process.
 */
function exitOnFatal(name: string, logger: Logger): void {
  const die = (kind: string) => (err: unknown) => {
    const e = err instanceof Error ? err : new ShoalError('INTERNAL', `non-Error thrown: ${String(err)}`)
    logger.fatal({ err: e, kind }, `${name} crashed: ${e.message}`)
    flushLogSync(logger)
    process.stderr.write(`${name}: crashed (${kind}): ${e.message}; the stack is in the log\n`)
    process.exit(1)
  }
  process.on('uncaughtException', die('uncaught exception'))
  process.on('unhandledRejection', die('unhandled rejection'))
}

export function intFlag(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError(`not a valid port or count: ${value}`)
  return n
}
