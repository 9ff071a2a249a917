/**
 * Where the clients find the cluster: /etc/shoal/client.yaml (or `--config FILE`, or
 * SHOAL_CONFIG), then SHOAL_PROXY / SHOAL_AGENT / SHOAL_CSGW / SHOAL_APISERVER / SHOAL_TOKEN_FILE,
 * then the flags. Precedence: flag >
 * environment > file > built-in default, so an operator writes the addresses once per host and
 * a script can still override one command. The file is strict like every daemon config (an
 * unknown key is refused, naming it and the file): a misspelt `proxi:` must not quietly fall
 * back to the default proxy. CSGW credentials never live here (environment or netrc only).
 */
import { existsSync } from 'node:fs'
import { loadConfig, validateConfig, z } from '../config/index.js'
import { isShoalError, ShoalError } from '../errors/index.js'
import { DEFAULT_AGENT, DEFAULT_APISERVER, DEFAULT_PROXY } from './common.js'
import type { FlagOptions } from './flag-file.js'

export const DEFAULT_CLIENT_CONFIG = '/etc/shoal/client.yaml'

const seconds = z.number().min(0)

/** Flag files: FILE<suffix> beside the file, holding nothing, its digest or a JSON summary. */
export const FlagConfigSchema = z
  .strictObject({
    suffix: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[^/\\\0]+$/, 'a suffix for a file name, without "/"')
      .default('.flag'),
    content: z.enum(['empty', 'digest', 'json']).default('empty'),
  })
  .prefault({})

export const ClientConfigSchema = z.strictObject({
  /** The proxy PushCLI and RemoveCLI talk to (host:port). */
  proxy: z.string().min(1).optional(),
  /** The agent PullCLI downloads through (host:port). */
  agent: z.string().min(1).optional(),
  /** The CSGW address ftp[s]://host[:port]/dir: PushCLI --dst-type csgw, PullCLI's fallback. */
  csgw: z.string().min(1).optional(),
  /** The herd's resource API `shoal job` and `shoal events` talk to (host:port; the herd's basePort + 6). */
  apiserver: z.string().min(1).optional(),
  /** A file holding the resource API token (apiserver.auth.tokens on the herd); never the token itself. */
  tokenFile: z.string().min(1).optional(),
  flag: FlagConfigSchema,
  /** Default `--timeout` of each client, seconds without progress (0 = none). */
  timeouts: z
    .strictObject({
      push: seconds.default(30),
      pull: seconds.default(10),
      remove: seconds.default(30),
    })
    .prefault({}),
})

export type ClientConfig = z.infer<typeof ClientConfigSchema>

/** What a client uses once file and environment are applied; flags go on top in the programs. */
export interface ClientSettings {
  proxy: string
  agent: string
  csgw?: string
  apiserver: string
  tokenFile?: string
  flag: FlagOptions
  timeouts: { push: number; pull: number; remove: number }
  /** The file that was read, if any (shown by errors and --help). */
  file?: string
}

export interface LoadClientOptions {
  /** `--config FILE`. */
  file?: string
  env?: NodeJS.ProcessEnv
  /** The file read when neither --config nor SHOAL_CONFIG names one. */
  defaultFile?: string
}

/**
 * Reads the client config and applies the environment. A missing default file is fine (the
 * built-in defaults apply); a file named by --config or SHOAL_CONFIG that is missing or
 * invalid is a USAGE error (exit 2): the operator asked for it.
 */
export function loadClientSettings(opts: LoadClientOptions = {}): ClientSettings {
  const env = opts.env ?? process.env
  const named = opts.file ?? (env.SHOAL_CONFIG || undefined)
  const file = named ?? opts.defaultFile ?? DEFAULT_CLIENT_CONFIG
  let config: ClientConfig
  try {
    if (named === undefined && !existsSync(file))
      config = validateConfig(ClientConfigSchema, {}, '(defaults)')
    else {
      const how = opts.file !== undefined ? '--config' : named !== undefined ? 'SHOAL_CONFIG' : undefined
      if (how && !existsSync(file))
        throw new ShoalError('USAGE', `client config ${file} (${how}) does not exist`)
      config = loadConfig(ClientConfigSchema, { component: 'client', file })
    }
  } catch (err) {
    if (isShoalError(err, 'CONFIG_INVALID'))
      throw new ShoalError('USAGE', err.message.replace(/^invalid configuration/, 'invalid client config'), {
        cause: err,
      })
    throw err
  }
  return {
    proxy: env.SHOAL_PROXY || config.proxy || DEFAULT_PROXY,
    agent: env.SHOAL_AGENT || config.agent || DEFAULT_AGENT,
    csgw: env.SHOAL_CSGW || config.csgw,
    apiserver: env.SHOAL_APISERVER || config.apiserver || DEFAULT_APISERVER,
    tokenFile: env.SHOAL_TOKEN_FILE || config.tokenFile,
    flag: { suffix: config.flag.suffix, content: config.flag.content },
    timeouts: { ...config.timeouts },
    file: existsSync(file) ? file : undefined,
  }
}
