/**
 * A small netrc reader (the format ftp(1) and curl read): `machine NAME login USER password PASS`
 * tokens separated by any white space, `default` as the fallback entry, `macdef` blocks skipped
 * up to the next empty line, `#` comments to the end of the line. Our own so that the only
 * FTP dependency stays basic-ftp, and so that a parse error never echoes a password.
 */
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { errnoCode, ShoalError } from '../errors/index.js'

export interface NetrcEntry {
  /** undefined for the `default` entry. */
  machine: string | undefined
  login?: string
  password?: string
  account?: string
}

export function parseNetrc(text: string): NetrcEntry[] {
  const entries: NetrcEntry[] = []
  let current: NetrcEntry | undefined
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const tokens = tokenize(lines[i] as string)
    for (let t = 0; t < tokens.length; t++) {
      const key = tokens[t] as string
      if (key === 'macdef') {
        // A macro body runs until the first empty line; its text is not ours to read.
        while (i + 1 < lines.length && (lines[i + 1] as string).trim() !== '') i++
        break
      }
      if (key === 'default') {
        current = { machine: undefined }
        entries.push(current)
        continue
      }
      const value = tokens[t + 1]
      if (key === 'machine') {
        if (value === undefined)
          throw new ShoalError('CONFIG_INVALID', `netrc line ${i + 1}: machine without a name`)
        current = { machine: value }
        entries.push(current)
        t++
        continue
      }
      if (key === 'login' || key === 'password' || key === 'account') {
        if (current === undefined)
          throw new ShoalError('CONFIG_INVALID', `netrc line ${i + 1}: ${key} before any machine entry`)
        if (value === undefined)
          throw new ShoalError('CONFIG_INVALID', `netrc line ${i + 1}: ${key} without a value`)
        current[key] = value
        t++
      }
      // Unknown tokens are skipped as other readers do; never quoted back (it may be a password).
    }
  }
  return entries
}

/** The entry for `host`, else the `default` entry, else undefined. */
export function findNetrc(entries: NetrcEntry[], host: string): NetrcEntry | undefined {
  const h = host.toLowerCase()
  return entries.find((e) => e.machine?.toLowerCase() === h) ?? entries.find((e) => e.machine === undefined)
}

/** Reads `path` (default ~/.netrc); a missing file is no entries, not an error. */
export async function readNetrc(path?: string): Promise<NetrcEntry[]> {
  const file = path ?? join(homedir(), '.netrc')
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' && path === undefined) return []
    throw new ShoalError(
      'CONFIG_INVALID',
      `cannot read the netrc file ${file}: ${errnoCode(err) ?? String(err)}`,
    )
  }
  return parseNetrc(text)
}

/** Splits on white space; a double-quoted token may hold spaces (as in GNU inetutils). */
function tokenize(line: string): string[] {
  const out: string[] = []
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g
  for (let m = re.exec(line); m !== null; m = re.exec(line)) {
    if (m[2]?.startsWith('#')) break
    out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] as string))
  }
  return out
}
