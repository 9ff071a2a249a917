/**
 * Structured JSON logs (pino). One root logger per process, passed down; components take a
 * child with `component` set, so one log file can be filtered per part.
 */
import { type DestinationStream, type Logger as PinoLogger, pino } from 'pino'

export type Logger = PinoLogger
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

export interface LoggerOptions {
  level?: LogLevel
  name?: string
  /** A file path to append to, or a stream; stdout when absent. */
  destination?: string | DestinationStream
}

/** File destinations of loggers made here, so a dying process can flush them (flushLogSync). */
const fileDestinations = new WeakMap<Logger, { flushSync(): void }>()

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? ((process.env.SHOAL_LOG_LEVEL as LogLevel | undefined) || 'info')
  const base = { name: opts.name ?? 'shoal', pid: process.pid }
  const options = { level, base, timestamp: pino.stdTimeFunctions.isoTime }
  if (opts.destination === undefined) return pino(options)
  if (typeof opts.destination === 'string') {
    const dest = pino.destination({ dest: opts.destination, append: true, mkdir: true, sync: false })
    const logger = pino(options, dest)
    fileDestinations.set(logger, dest)
    return logger
  }
  return pino(options, opts.destination)
}

/**
 * Writes out what a file logger still buffers, synchronously: the last lines of a process
 * that is about to exit (a fatal error's stack) must reach the file.
 */
export function flushLogSync(logger: Logger): void {
  try {
    fileDestinations.get(logger)?.flushSync()
  } catch {
    // The file may be the very thing that failed (disk full); stderr still has the line.
  }
}

/** A logger that discards everything: for tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
