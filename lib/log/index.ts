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

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? ((process.env.SHOAL_LOG_LEVEL as LogLevel | undefined) || 'info')
  const base = { name: opts.name ?? 'shoal', pid: process.pid }
  const options = { level, base, timestamp: pino.stdTimeFunctions.isoTime }
  if (opts.destination === undefined) return pino(options)
  if (typeof opts.destination === 'string') {
    return pino(options, pino.destination({ dest: opts.destination, append: true, mkdir: true, sync: false }))
  }
  return pino(options, opts.destination)
}

/** A logger that discards everything: for tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
