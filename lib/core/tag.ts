/**
 * The tag grammar `srcHost-srcDir-fileName:version`.
 *
 * - srcHost: the pushing host (name or IP), no '/' and no white space.
 * - srcDir: the absolute directory the file came from. Because '-' is both the separator and a
 *   legal character, the canonical form writes srcDir with a trailing '/' whenever its last
 *   component contains '-' (`h-/opt/ref-data/-x.txt`); otherwise the fileName starts after the
 *   first '-' of the last path component (`h-/opt/data-my-file.txt` → `/opt/data`, `my-file.txt`).
 * - fileName: a base name (UTF-8 welcome), never '.', '..' or containing '/' or '\'.
 * - version: after the last ':' (once a '/' has been seen, so IPv6 hosts still work); `latest`
 *   when absent.
 *
 * A tag is never used raw as a file or object name: `tagKey` encodes it first.
 */
import { ShoalError } from '../errors/index.js'
import { printable } from './digest.js'

export const MAX_TAG_BYTES = 512
export const MAX_HOST_BYTES = 253
export const LATEST = 'latest'
const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/

export interface TagParts {
  srcHost: string
  srcDir: string
  fileName: string
  version?: string
}

export class Tag {
  readonly srcHost: string
  readonly srcDir: string
  readonly fileName: string
  readonly version: string

  private constructor(parts: Required<TagParts>) {
    this.srcHost = parts.srcHost
    this.srcDir = parts.srcDir
    this.fileName = parts.fileName
    this.version = parts.version
  }

  /** Parses and canonicalises a tag string; throws INVALID_TAG naming what is wrong. */
  static parse(input: string): Tag {
    if (typeof input !== 'string' || input.length === 0) fail(String(input ?? ''), 'the tag is empty')
    checkCharacters(input, 'tag')
    const bytes = Buffer.byteLength(input, 'utf8')
    if (bytes > MAX_TAG_BYTES) fail(input, `the tag is ${bytes} bytes; the limit is ${MAX_TAG_BYTES}`)

    const firstSlash = input.indexOf('/')
    if (firstSlash < 0) fail(input, 'expected srcHost-srcDir-fileName[:version] with an absolute srcDir')
    let name = input
    let version = LATEST
    const lastColon = input.lastIndexOf(':')
    if (lastColon > firstSlash) {
      name = input.slice(0, lastColon)
      version = input.slice(lastColon + 1)
    }
    if (firstSlash < 2 || name[firstSlash - 1] !== '-')
      fail(input, 'srcHost is empty or not followed by "-/srcDir"')
    const srcHost = name.slice(0, firstSlash - 1)
    const rest = name.slice(firstSlash)
    const lastSlash = rest.lastIndexOf('/')
    const lastSegment = rest.slice(lastSlash + 1)
    let srcDir: string
    let fileName: string
    if (lastSegment.startsWith('-')) {
      srcDir = rest.slice(0, lastSlash + 1)
      fileName = lastSegment.slice(1)
    } else {
      const dash = lastSegment.indexOf('-')
      if (dash <= 0) fail(input, 'fileName is missing (expected srcHost-srcDir-fileName)')
      srcDir = rest.slice(0, lastSlash + 1) + lastSegment.slice(0, dash)
      fileName = lastSegment.slice(dash + 1)
    }
    return Tag.from({ srcHost, srcDir, fileName, version }, input)
  }

  /** Builds a tag from its parts, validating each. */
  static from(parts: TagParts, original?: string): Tag {
    const shown = original ?? `${parts.srcHost}-${parts.srcDir}-${parts.fileName}:${parts.version ?? LATEST}`
    const version = parts.version ?? LATEST
    checkHost(parts.srcHost, shown)
    const srcDir = normaliseDir(parts.srcDir, shown)
    checkFileName(parts.fileName, shown)
    if (!VERSION_RE.test(version)) {
      fail(
        shown,
        `version "${printable(version)}" must be 1-128 of A-Z a-z 0-9 . _ + - and start with a letter or digit`,
      )
    }
    const tag = new Tag({ srcHost: parts.srcHost, srcDir, fileName: parts.fileName, version })
    const bytes = Buffer.byteLength(tag.toString(), 'utf8')
    if (bytes > MAX_TAG_BYTES) fail(shown, `the tag is ${bytes} bytes; the limit is ${MAX_TAG_BYTES}`)
    return tag
  }

  static isValid(input: string): boolean {
    try {
      Tag.parse(input)
      return true
    } catch {
      return false
    }
  }

  /** `srcHost-srcDir-fileName` without the version. */
  get name(): string {
    const lastComponent = this.srcDir.slice(this.srcDir.lastIndexOf('/') + 1)
    const dir =
      this.srcDir === '/' || lastComponent.includes('-') ? `${this.srcDir.replace(/\/$/, '')}/` : this.srcDir
    return `${this.srcHost}-${dir}-${this.fileName}`
  }

  withVersion(version: string): Tag {
    return Tag.from({ srcHost: this.srcHost, srcDir: this.srcDir, fileName: this.fileName, version })
  }

  get isLatest(): boolean {
    return this.version === LATEST
  }

  toString(): string {
    return `${this.name}:${this.version}`
  }

  toJSON(): string {
    return this.toString()
  }
}

/**
 * Encodes a tag (or a tag prefix) for use in an object key: ASCII outside [A-Za-z0-9._-] becomes
 * %XX, UTF-8 stays readable. Encoding is per character, so prefixes of tags encode to prefixes
 * of keys and listing by prefix works on the encoded form.
 */
export function tagKey(tagOrPrefix: string): string {
  let out = ''
  for (const ch of tagOrPrefix) {
    const c = ch.codePointAt(0) ?? 0
    if (c >= 0x80 || /[A-Za-z0-9._-]/.test(ch)) out += ch
    else out += `%${c.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

export function tagFromKey(key: string): string {
  try {
    return decodeURIComponent(key)
  } catch (err) {
    throw new ShoalError('INVALID_TAG', `undecodable tag key "${printable(key)}"`, { cause: err })
  }
}

function checkCharacters(value: string, what: string): void {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c === 0) fail(value, `${what} contains a NUL character`)
    if (c < 0x20 || c === 0x7f || (c >= 0x80 && c < 0xa0) || c === 0x2028 || c === 0x2029) {
      fail(value, `${what} contains control character U+${c.toString(16).toUpperCase().padStart(4, '0')}`)
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = value.charCodeAt(i + 1)
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) i++
      else fail(value, `${what} contains an unpaired surrogate (not valid UTF-8)`)
    }
  }
}

function checkHost(host: string, shown: string): void {
  if (!host) fail(shown, 'srcHost is empty')
  checkCharacters(host, 'srcHost')
  if (Buffer.byteLength(host) > MAX_HOST_BYTES) fail(shown, `srcHost is longer than ${MAX_HOST_BYTES} bytes`)
  if (/[\s/\\]/.test(host)) fail(shown, 'srcHost may not contain white space, "/" or "\\"')
}

function normaliseDir(dir: string, shown: string): string {
  if (!dir) fail(shown, 'srcDir is empty')
  checkCharacters(dir, 'srcDir')
  if (!dir.startsWith('/')) fail(shown, 'srcDir must be an absolute path')
  if (dir.includes('\\')) fail(shown, 'srcDir may not contain "\\"')
  const trimmed = dir.length > 1 && dir.endsWith('/') ? dir.slice(0, -1) : dir
  if (trimmed === '/') return '/'
  for (const part of trimmed.slice(1).split('/')) {
    if (part === '') fail(shown, 'srcDir has an empty path component ("//")')
    if (part === '.' || part === '..') fail(shown, `srcDir may not contain "${part}" components`)
  }
  return trimmed
}

function checkFileName(name: string, shown: string): void {
  if (!name) fail(shown, 'fileName is empty')
  checkCharacters(name, 'fileName')
  if (name === '.' || name === '..') fail(shown, `fileName may not be "${name}"`)
  if (/[/\\]/.test(name)) fail(shown, 'fileName may not contain "/" or "\\"')
  if (Buffer.byteLength(name) > 255) fail(shown, 'fileName is longer than 255 bytes')
}

function fail(input: string, why: string): never {
  throw new ShoalError('INVALID_TAG', `invalid tag "${printable(input)}": ${why}`)
}
