/**
 * Configuration: code defaults < config/<component>/base.yaml < the environment file that
 * `extends` it < flags. Validated once with a strict schema (an unknown or misspelt key stops
 * the daemon with an error naming it), then frozen.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { type ZodType, z } from 'zod'
import { ShoalError } from '../errors/index.js'

export type { ZodType }
export { z }

export interface LoadConfigOptions {
  /** Folder name under config/, e.g. 'origin'. */
  component: string
  /** Explicit file; otherwise config/<component>/<env>.yaml, falling back to base.yaml. */
  file?: string
  /** Environment name (SHOAL_ENV, default 'development'). */
  env?: string
  /** Root of the config tree (SHOAL_CONFIG_DIR, default the package's config/). */
  configDir?: string
  /** Values from flags, merged last. */
  overrides?: Record<string, unknown>
}

const MAX_EXTENDS_DEPTH = 8

export function loadConfig<T>(schema: ZodType<T>, opts: LoadConfigOptions): T {
  const files = resolveFiles(opts)
  let merged: Record<string, unknown> = {}
  for (const file of files) merged = deepMerge(merged, readYaml(file))
  if (opts.overrides) merged = deepMerge(merged, stripUndefined(opts.overrides))
  return validateConfig(schema, merged, files.join(' + ') || '(defaults)')
}

/** Validates a plain object against a config schema; errors name the key and the source. */
export function validateConfig<T>(schema: ZodType<T>, value: unknown, source = '(inline)'): T {
  const parsed = schema.safeParse(value)
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const at = issue.path.join('.')
      if (issue.code === 'unrecognized_keys') {
        const keys = (issue as { keys: string[] }).keys.map((k) => (at ? `${at}.${k}` : k))
        return `unknown key${keys.length > 1 ? 's' : ''} ${keys.map((k) => `"${k}"`).join(', ')}`
      }
      return `"${at || '(root)'}": ${issue.message}`
    })
    throw new ShoalError('CONFIG_INVALID', `invalid configuration in ${source}: ${problems.join('; ')}`)
  }
  return deepFreeze(parsed.data)
}

export function defaultConfigDir(): string {
  if (process.env.SHOAL_CONFIG_DIR) return resolve(process.env.SHOAL_CONFIG_DIR)
  // Works from lib/config (tsx) and from dist/lib/config (built): walk up to the package root.
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'config'))) return join(dir, 'config')
    dir = dirname(dir)
  }
  return resolve('config')
}

function resolveFiles(opts: LoadConfigOptions): string[] {
  let start: string | undefined
  if (opts.file) {
    start = resolve(opts.file)
    if (!existsSync(start)) throw new ShoalError('CONFIG_INVALID', `config file not found: ${start}`)
  } else {
    const dir = join(opts.configDir ?? defaultConfigDir(), opts.component)
    const explicit = opts.env ?? process.env.SHOAL_ENV
    const env = explicit ?? 'development'
    const envFile = join(dir, `${env}.yaml`)
    if (existsSync(envFile)) start = envFile
    else if (explicit !== undefined && explicit !== 'base') {
      // A misspelt --env must not quietly run with the base defaults.
      const known = existsSync(dir)
        ? readdirSync(dir)
            .filter((f) => f.endsWith('.yaml'))
            .map((f) => f.slice(0, -5))
        : []
      throw new ShoalError(
        'CONFIG_INVALID',
        `no config for environment "${env}" of ${opts.component}: ${envFile} does not exist (known: ${known.join(', ') || 'none'})`,
      )
    } else if (existsSync(join(dir, 'base.yaml'))) start = join(dir, 'base.yaml')
    if (!start) return []
  }
  const chain: string[] = []
  let current: string | undefined = start
  while (current) {
    if (chain.includes(current))
      throw new ShoalError('CONFIG_INVALID', `config "extends" loops back to ${current}`)
    if (chain.length >= MAX_EXTENDS_DEPTH)
      throw new ShoalError('CONFIG_INVALID', `config "extends" chain deeper than ${MAX_EXTENDS_DEPTH}`)
    chain.unshift(current)
    const ext: unknown = readYaml(current, true).extends
    if (ext === undefined) break
    if (typeof ext !== 'string')
      throw new ShoalError('CONFIG_INVALID', `"extends" in ${current} must be a file name`)
    current = isAbsolute(ext) ? ext : join(dirname(current), ext)
    if (!existsSync(current))
      throw new ShoalError('CONFIG_INVALID', `${chain[0]} extends ${ext}, which does not exist`)
  }
  return chain
}

function readYaml(file: string, keepExtends = false): Record<string, unknown> {
  let doc: unknown
  try {
    doc = parseYaml(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new ShoalError('CONFIG_INVALID', `cannot read config ${file}: ${(err as Error).message}`, {
      cause: err,
    })
  }
  if (doc === null || doc === undefined) return {}
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw new ShoalError('CONFIG_INVALID', `config ${file} must be a YAML mapping`)
  const obj = { ...(doc as Record<string, unknown>) }
  if (!keepExtends) delete obj.extends
  return obj
}

export function deepMerge(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) {
    const prev = out[k]
    out[k] = isPlainObject(prev) && isPlainObject(v) ? deepMerge(prev, v) : v
  }
  return out
}

function stripUndefined(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined) continue
    out[k] = isPlainObject(v) ? stripUndefined(v) : v
  }
  return out
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

/** Schemas shared by every daemon's config. */
export const LogConfig = z
  .strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Append JSON logs to this file instead of stdout. */
    file: z.string().optional(),
  })
  .prefault({})

/**
 * A daemon's HTTP listener and the limits that keep one client from holding it: see
 * lib/http/server.ts and docs/robustness.md.
 */
export const ListenConfig = (defaultPort: number, defaultHost = '0.0.0.0') =>
  z
    .strictObject({
      host: z.string().min(1).default(defaultHost),
      port: z.number().int().min(0).max(65535).default(defaultPort),
      /**
       * A connection on which nothing moves for this long while the server waits on the
       * client (headers, request body, reading the response) is closed (ms).
       */
      idleTimeoutMs: z.number().int().min(1000).max(3_600_000).default(60_000),
      /** Open connections at most, over all clients; more are refused at accept. */
      maxConnections: z.number().int().min(1).max(1_000_000).default(10_000),
      /** Open connections at most from one client address. */
      maxConnectionsPerClient: z.number().int().min(1).max(1_000_000).default(512),
      /**
       * A request's headers must be complete this long after its first byte (ms), however
       * slowly they trickle in (a slowloris client); past it 408 and close.
       */
      headersTimeoutMs: z.number().int().min(100).max(600_000).default(30_000),
      /** Request line and headers at most (bytes); past it 431 and close. */
      maxHeaderBytes: z
        .number()
        .int()
        .min(1024)
        .max(1 << 20)
        .default(16 << 10),
      /**
       * A request body the server is waiting for must bring at least this many bytes a second,
       * averaged over bodyRateWindowMs (a client trickling a byte now and then keeps the idle
       * timeout from firing); slower: 408 and close. 0 turns the check off.
       */
      minBodyBytesPerSec: z
        .number()
        .int()
        .min(0)
        .max(1 << 30)
        .default(256),
      /** The window minBodyBytesPerSec is averaged over (ms). */
      bodyRateWindowMs: z.number().int().min(100).max(3_600_000).default(30_000),
    })
    .prefault({})

/**
 * A per-client-address token bucket (lib/http/rate-limit.ts): `perSecond` sustained, `burst`
 * at once; 0 per second turns it off. Defaults are per route family, sized for a fleet.
 */
export const RateLimitConfig = (perSecond: number, burst: number) =>
  z
    .strictObject({
      perSecond: z.number().min(0).max(1_000_000).default(perSecond),
      burst: z.number().int().min(1).max(10_000_000).default(burst),
    })
    .prefault({})

export type LogConfigT = z.infer<typeof LogConfig>
