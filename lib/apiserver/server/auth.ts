/**
 * Bearer tokens for the resource API. Tokens are read from files at start (never from the
 * config itself, never logged: only their names are); each has a name (the actor logged with
 * writes: "herd-admin", "agent-10") and an access level. When no token is configured, writes
 * are open (the embedded single-host default); reads are open unless `readsNeedToken`.
 * Comparison is over SHA-256 digests with timingSafeEqual, so neither a token's bytes nor its
 * length leak through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { z } from '../../config/index.js'
import { ShoalError } from '../../errors/index.js'

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
  })
  .default({ tokens: [], readsNeedToken: false })
export type AuthConfigT = z.infer<typeof AuthConfig>

interface Token {
  name: string
  digest: Buffer
  access: 'read' | 'write'
}

const MIN_TOKEN_CHARS = 16
const MAX_HEADER_CHARS = 4096

export class TokenAuth {
  private constructor(
    private readonly tokens: Token[],
    private readonly readsNeedToken: boolean,
    private readonly configured: number,
  ) {}

  /** `internal`: tokens held in memory by this process (name and token), write access. */
  static async load(
    config: AuthConfigT,
    internal: ReadonlyArray<{ name: string; token: string }> = [],
  ): Promise<TokenAuth> {
    const tokens: Token[] = []
    for (const t of config.tokens) {
      let text: string
      try {
        text = (await readFile(t.file, 'utf8')).trim()
      } catch (err) {
        throw new ShoalError(
          'CONFIG_INVALID',
          `cannot read the token file of "${t.name}" (${t.file}): ${(err as Error).message}`,
        )
      }
      if (text.length < MIN_TOKEN_CHARS || text.length > 1024 || /\s/.test(text))
        throw new ShoalError(
          'CONFIG_INVALID',
          `the token of "${t.name}" (${t.file}) must be ${MIN_TOKEN_CHARS}..1024 characters without spaces`,
        )
      tokens.push({ name: t.name, digest: digest(text), access: t.access })
    }
    if (config.readsNeedToken && tokens.length === 0)
      throw new ShoalError('CONFIG_INVALID', 'auth.readsNeedToken needs at least one token in auth.tokens')
    const configured = tokens.length
    for (const t of internal) tokens.push({ name: t.name, digest: digest(t.token), access: 'write' })
    return new TokenAuth(tokens, config.readsNeedToken, configured)
  }

  /** True when the operator configured tokens (internal ones do not count). */
  get enabled(): boolean {
    return this.configured > 0
  }

  /** The caller's name ('anonymous' without a token), or UNAUTHORIZED / FORBIDDEN. */
  check(req: IncomingMessage, write: boolean): string {
    const who = this.find(req)
    if (who) {
      if (write && who.access !== 'write')
        throw new ShoalError('FORBIDDEN', `token "${who.name}" may only read`)
      return who.name
    }
    if (!write && !this.readsNeedToken) return 'anonymous'
    if (write && this.configured === 0) {
      const from = req.socket.remoteAddress ?? 'an unknown address'
      if (isLoopback(from)) return 'anonymous'
      throw new ShoalError(
        'FORBIDDEN',
        `writes from ${from} are refused: no token is configured (apiserver.auth.tokens in the herd config), so only loopback clients may write; configure a token and send "Authorization: Bearer <token>"`,
      )
    }
    throw new ShoalError(
      'UNAUTHORIZED',
      'this request needs a valid "Authorization: Bearer <token>" header (tokens: apiserver.auth.tokens in the herd config; clients: tokenFile in the client config)',
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

/** 127.0.0.0/8, ::1, and IPv4-mapped loopback. */
export function isLoopback(address: string): boolean {
  const a = address.replace(/^::ffff:/i, '')
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a)
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest()
}
