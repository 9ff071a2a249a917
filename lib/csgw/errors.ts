/**
 * basic-ftp fails with FTPError (a reply code), Node socket errors, or plain Errors whose
 * message is the only clue ("Timeout (data socket)"). This turns each into one ShoalError
 * whose message names the server (redacted) and what to do, and never carries a credential:
 * server replies are quoted, so any secret we know is scrubbed from them as well.
 */
import { errnoCode, isShoalError, ShoalError } from '../errors/index.js'

export interface FailureContext {
  /** The redacted address. */
  server: string
  /** What we were doing: "downloading /dir/x.txt". */
  what: string
  /** Strings that must never appear in a message (the password, the user). */
  secrets: readonly string[]
}

const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
])

export function csgwError(err: unknown, ctx: FailureContext): ShoalError {
  if (isShoalError(err)) return err
  const e = err as { code?: unknown; message?: unknown; name?: unknown }
  const raw = scrub(typeof e?.message === 'string' ? e.message : String(err), ctx.secrets)
  const where = `CSGW ${ctx.server}`
  if (typeof e?.code === 'number') {
    const code = e.code
    if (code === 530 || code === 331 || code === 332)
      return new ShoalError(
        'CSGW_AUTH',
        `${where} refused the login (${firstLine(raw)}): check SHOAL_CSGW_USER / SHOAL_CSGW_PASSWORD, the client config or the netrc entry for the host`,
        { cause: err, details: { ftpCode: code } },
      )
    if (code === 550 || code === 450)
      return new ShoalError('NOT_FOUND', `${where}: ${ctx.what}: ${firstLine(raw)}`, {
        cause: err,
        details: { ftpCode: code },
      })
    if (code >= 400 && code < 500)
      return new ShoalError(
        'CSGW_UNAVAILABLE',
        `${where} failed ${ctx.what} for now (${firstLine(raw)}): try again; if it repeats check the server`,
        { cause: err, details: { ftpCode: code } },
      )
    return new ShoalError('CSGW_REFUSED', `${where} refused ${ctx.what}: ${firstLine(raw)}`, {
      cause: err,
      details: { ftpCode: code },
    })
  }
  const errno = errnoCode(err)
  if (/^Timeout/.test(raw))
    return new ShoalError(
      'TIMEOUT',
      `${where}: no progress while ${ctx.what} (${raw}): check the network and the server`,
      {
        cause: err,
      },
    )
  // "None of the available transfer strategies work": no data connection could be opened
  // (the server ran out of passive ports, a firewall): worth a reconnect, within the bound.
  if (
    (errno && UNREACHABLE.has(errno)) ||
    /closed|FIN packet|transmission error|socket|transfer strategies/i.test(raw)
  )
    return new ShoalError(
      'CSGW_UNAVAILABLE',
      `cannot reach ${where} while ${ctx.what} (${errno ?? firstLine(raw)}): check the address and that the server is up`,
      { cause: err, details: errno ? { errno } : undefined },
    )
  if (typeof e?.code === 'string' && /^ERR_TLS|CERT|SSL/.test(e.code))
    return new ShoalError(
      'CSGW_UNAVAILABLE',
      `TLS with ${where} failed (${e.code}): check the server's certificate and the ftps setting`,
      {
        cause: err,
      },
    )
  return new ShoalError('CSGW_REFUSED', `${where}: ${ctx.what} failed: ${firstLine(raw)}`, { cause: err })
}

/** Failures worth a reconnect: the connection dropped, the server said "not now", no progress. */
export function isTransient(err: ShoalError): boolean {
  return err.code === 'CSGW_UNAVAILABLE' || err.code === 'TIMEOUT'
}

function firstLine(s: string): string {
  return (s.split(/\r?\n/)[0] ?? '').trim().slice(0, 300)
}

function scrub(s: string, secrets: readonly string[]): string {
  let out = s
  for (const secret of secrets) if (secret.length >= 3) out = out.split(secret).join('***')
  return out
}
