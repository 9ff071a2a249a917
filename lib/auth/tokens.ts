/**
 * Bearer tokens. Tokens are read from files (never from the config itself, never logged: only
 * their names are); each has a name (the actor logged with writes: "herd-admin", "agent-10")
 * and an access level. When no token is configured, writes are open to loopback clients only
 * (the embedded single-host default); reads are open unless `readsNeedToken`.
 *
 * Rotation without a restart: every `reloadSeconds` each token file's identity (inode, size,
 * mtime) is compared with the one read, and a changed file is read again; the new token
 * replaces the old one at once. A file that became unreadable or invalid keeps the token last
 * read (a half-written file must not lock everyone out) and is reported through `onReloadError`
 * (its name and path, never its content). To rotate with overlap, list the new token under a
 * second name first, move clients over, then remove the old entry.
 *
 * Comparison is over SHA-256 digests with timingSafeEqual, and every token is compared on every
 * request, so neither a token's bytes nor its length nor which entry matched leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { z } from '../config/index.js'
import { ShoalError } from '../errors/index.js'
import type { Service } from '../lifecycle/index.js'

export const AuthConfig = z
  .strictObject({
    tokens: z
      .array(
        z.strictObject({
          name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
          /** A file holding the token (surrounding whitespace ignored); keep it mode 0600. */
          file: z.string().min(1),
          /** write: every route; read: GET only (a write answers 403). */
          access: z.enum(['read', 'write']).default('write'),
        }),
      )
      .max(1000)
      .default([]),
    readsNeedToken: z.boolean().default(false),
    /** How often token files are checked for a change (rotation), seconds; 0 = read once. */
    reloadSeconds: z.number().int().min(0).max(3600).default(10),
  })
  .default({ tokens: [], readsNeedToken: false, reloadSeconds: 10 })
export type AuthConfigT = z.infer<typeof AuthConfig>

export interface TokenAuthOptions {
  /** Tokens held in memory by this process (name and token), write access; never reloaded. */
  internal?: ReadonlyArray<{ name: string; token: string }>
  /** Where the operator configures tokens, for error messages: "apiserver.auth.tokens in the herd config". */
  configKey?: string
  /** A token file that changed but could not be used; the old token stays. */
  onReloadError?: (name: string, file: string, reason: string) => void
  /** A token file was read again after a change. */
  onReload?: (name: string, file: string) => void
  /**
   * Reads from addresses other than loopback need a token too (the agent's API bound beyond
   * loopback: local users read freely, the network does not).
   */
  remoteReadsNeedToken?: boolean
}

interface Token {
  name: string
  file?: string
  /** inode:size:mtime of the file when read. */
  identity?: string
  digest: Buffer
  access: 'read' | 'write'
}

const MIN_TOKEN_CHARS = 16
const MAX_TOKEN_CHARS = 1024
const MAX_HEADER_CHARS = 4096

export class TokenAuth implements Service {
  private timer: NodeJS.Timeout | undefined
  private reloading: Promise<void> | undefined

  private constructor(
    private readonly tokens: Token[],
    private readonly config: AuthConfigT,
    private readonly opts: TokenAuthOptions,
  ) {}

  static async load(config: AuthConfigT, opts: TokenAuthOptions = {}): Promise<TokenAuth> {
    const tokens: Token[] = []
    for (const t of config.tokens) {
      const read = await readToken(t.name, t.file).catch((err: ShoalError) => {
        throw new ShoalError('CONFIG_INVALID', err.message)
      })
      tokens.push({ name: t.name, file: t.file, ...read, access: t.access })
    }
    if (config.readsNeedToken && tokens.length === 0)
      throw new ShoalError('CONFIG_INVALID', 'auth.readsNeedToken needs at least one token in auth.tokens')
    for (const t of opts.internal ?? [])
      tokens.push({ name: t.name, digest: digest(t.token), access: 'write' })
    return new TokenAuth(tokens, config, opts)
  }

  /** True when the operator configured tokens (internal ones do not count). */
  get enabled(): boolean {
    return this.config.tokens.length > 0
  }

  /** Starts checking the token files for changes (nothing to do without files or reloadSeconds). */
  async start(): Promise<void> {
    if (!this.config.reloadSeconds || !this.tokens.some((t) => t.file)) return
    this.timer = setInterval(() => {
      this.reloading ??= this.reload().finally(() => {
        this.reloading = undefined
      })
    }, this.config.reloadSeconds * 1000)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.reloading
  }

  /** Reads again every token file whose identity changed. Exposed for tests and SIGHUP. */
  async reload(): Promise<void> {
    for (const t of this.tokens) {
      if (!t.file) continue
      const now = await identity(t.file).catch(() => undefined)
      if (now === t.identity) continue
      try {
        const read = await readToken(t.name, t.file)
        t.digest = read.digest
        t.identity = read.identity
        this.opts.onReload?.(t.name, t.file)
      } catch (err) {
        // Remember the identity seen, so one bad file is reported once, not every interval.
        t.identity = now
        this.opts.onReloadError?.(t.name, t.file, (err as Error).message)
      }
    }
  }

  /** The caller's name ('anonymous' without a token), or UNAUTHORIZED / FORBIDDEN. */
  check(req: IncomingMessage, write: boolean): string {
    const key = this.opts.configKey ?? 'auth.tokens in the config'
    const who = this.find(req)
    if (who) {
      if (write && who.access !== 'write')
        throw new ShoalError('FORBIDDEN', `token "${who.name}" may only read`)
      return who.name
    }
    const remote = req.socket.remoteAddress ?? ''
    if (!write && !this.config.readsNeedToken && !(this.opts.remoteReadsNeedToken && !isLoopback(remote)))
      return 'anonymous'
    if (write && !this.enabled) {
      const from = remote || 'an unknown address'
      if (isLoopback(from)) return 'anonymous'
      throw new ShoalError(
        'FORBIDDEN',
        `writes from ${from} are refused: no token is configured (${key}), so only loopback clients may write; configure a token and send "Authorization: Bearer <token>"`,
      )
    }
    throw new ShoalError(
      'UNAUTHORIZED',
      `this request needs a valid "Authorization: Bearer <token>" header (tokens: ${key}; clients: tokenFile in the client config)`,
    )
  }

  private find(req: IncomingMessage): Token | undefined {
    const h = req.headers.authorization
    if (typeof h !== 'string' || h.length > MAX_HEADER_CHARS) return undefined
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(h)
    if (!m) return undefined
    const d = digest(m[1] as string)
    let found: Token | undefined
    // Every token is compared, found or not: the time taken does not say which one matched.
    for (const t of this.tokens) if (timingSafeEqual(t.digest, d) && !found) found = t
    return found
  }
}

async function readToken(name: string, file: string): Promise<{ digest: Buffer; identity: string }> {
  let text: string
  let id: string
  try {
    // Identity first: a file replaced between the two calls is seen as changed at the next check.
    id = await identity(file)
    text = (await readFile(file, 'utf8')).trim()
  } catch (err) {
    throw new ShoalError(
      'UNAVAILABLE',
      `cannot read the token file of "${name}" (${file}): ${(err as Error).message}`,
    )
  }
  if (text.length < MIN_TOKEN_CHARS || text.length > MAX_TOKEN_CHARS || /\s/.test(text))
    throw new ShoalError(
      'INVALID',
      `the token of "${name}" (${file}) must be ${MIN_TOKEN_CHARS}..${MAX_TOKEN_CHARS} characters without spaces`,
    )
  return { digest: digest(text), identity: id }
}

/** inode, size and mtime: what changes when a file is rewritten or a Secret's symlink is swapped. */
async function identity(file: string): Promise<string> {
  const s = await stat(file, { bigint: true })
  return `${s.ino}:${s.size}:${s.mtimeNs}`
}

/** 127.0.0.0/8, ::1, and IPv4-mapped loopback. */
export function isLoopback(address: string): boolean {
  const a = address.replace(/^::ffff:/i, '')
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a)
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest()
}
