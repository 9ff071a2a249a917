/**
 * A CSGW address: `ftp://host[:port]/dir` (plain FTP) or `ftps://host[:port]/dir` (explicit
 * TLS, AUTH TLS on the usual port 21: the CSGW gateways speak explicit TLS, not implicit FTPS).
 * Everything that prints an address prints `redacted`, which never carries a user or password.
 */
import { ShoalError } from '../errors/index.js'

export interface CsgwAddress {
  host: string
  port: number
  /** Absolute remote folder, without a trailing slash ('/' for the root). */
  dir: string
  /** Explicit TLS (ftps:// or the `secure` option). */
  secure: boolean
  /** Credentials found in the URL itself, if any: used, never printed. */
  user?: string
  password?: string
  /** `ftp://host:port/dir`: safe to print and log. */
  redacted: string
}

export function isCsgwAddress(value: string): boolean {
  return /^ftps?:\/\//i.test(value)
}

export function parseCsgwAddress(value: string): CsgwAddress {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    // The raw value may hold a password: name only what the form should be.
    throw new ShoalError('CONFIG_INVALID', 'invalid CSGW address: expected ftp://host[:port]/dir')
  }
  const scheme = url.protocol.toLowerCase()
  if (scheme !== 'ftp:' && scheme !== 'ftps:')
    throw new ShoalError(
      'CONFIG_INVALID',
      `invalid CSGW address scheme ${scheme}: expected ftp:// or ftps://`,
    )
  if (!url.hostname) throw new ShoalError('CONFIG_INVALID', 'invalid CSGW address: no host')
  if (url.search || url.hash)
    throw new ShoalError('CONFIG_INVALID', 'invalid CSGW address: no query or fragment allowed')
  const port = url.port ? Number(url.port) : 21
  const dir = normaliseDir(decodeURIComponent(url.pathname))
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  const hostPart = host.includes(':') ? `[${host}]` : host
  return {
    host,
    port,
    dir,
    secure: scheme === 'ftps:',
    user: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    redacted: `${scheme}//${hostPart}:${port}${dir === '/' ? '' : dir}`,
  }
}

/**
 * A remote folder: absolute as given, relative to the address's folder otherwise. Control
 * characters are refused because FTP commands are lines: a name with CR/LF would be a second
 * command.
 */
export function resolveRemoteDir(base: string, dir: string | undefined): string {
  if (dir === undefined || dir === '' || dir === '.') return base
  checkRemoteText(dir, 'remote folder')
  if (dir.startsWith('/')) return normaliseDir(dir)
  return normaliseDir(`${base}/${dir}`)
}

/** A file name on the CSGW: one path component, no control characters. */
export function checkRemoteName(name: string): void {
  checkRemoteText(name, 'remote file name')
  if (name === '' || name === '.' || name === '..' || name.includes('/'))
    throw new ShoalError(
      'INVALID_PATH',
      `invalid remote file name ${JSON.stringify(name)}: one path component`,
    )
}

function checkRemoteText(value: string, what: string): void {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(value))
    throw new ShoalError('INVALID_PATH', `invalid ${what} ${JSON.stringify(value)}: control characters`)
}

function normaliseDir(path: string): string {
  const parts: string[] = []
  for (const p of path.split('/')) {
    if (p === '' || p === '.') continue
    if (p === '..')
      throw new ShoalError('INVALID_PATH', `invalid remote folder ${JSON.stringify(path)}: '..'`)
    parts.push(p)
  }
  checkRemoteText(parts.join('/'), 'remote folder')
  return `/${parts.join('/')}`
}
