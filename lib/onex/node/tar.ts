/**
 * Unpacks a OneX node image (a ustar tarball) into a folder, refusing anything that could write
 * outside it or fill the disk: absolute names, `..`, symlinks whose target leaves the folder,
 * entries that go through a symlink, hard links, devices, FIFOs, pax and GNU extension headers,
 * duplicates, more than `maxEntries` entries or `maxBytes` of file data. Headers are checksummed
 * and every size is checked against what is left of the file, so a truncated or hostile tarball
 * stops with BAD_IMAGE (or PAYLOAD_TOO_LARGE) instead of reading past its end. The tarball is read
 * through a file handle a block at a time: memory stays bounded whatever its size.
 */
import { lstat, mkdir, open, symlink } from 'node:fs/promises'
import { posix } from 'node:path'
import { printable } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'

export interface UnpackLimits {
  /** Total bytes of file data. */
  maxBytes: number
  /** Entries of any kind. */
  maxEntries: number
}

export interface UnpackResult {
  files: number
  bytes: number
}

const BLOCK = 512
const COPY_CHUNK = 1 << 20

function bad(message: string, entry?: string): ShoalError {
  const where = entry === undefined ? '' : ` (entry ${printable(entry)})`
  return new ShoalError('BAD_IMAGE', `the image tarball ${message}${where}; nothing was run`)
}

function field(h: Buffer, offset: number, length: number): string {
  const raw = h.subarray(offset, offset + length)
  const end = raw.indexOf(0)
  return raw.subarray(0, end < 0 ? length : end).toString('utf8')
}

function octal(h: Buffer, offset: number, length: number, what: string): number {
  // Base-256 numbers (high bit set) only matter for files ≥ 8 GiB: no image is that large.
  if ((h[offset] ?? 0) & 0x80) throw bad(`uses a base-256 ${what}`)
  const text = field(h, offset, length).trim()
  if (text === '') return 0
  if (!/^[0-7]{1,12}$/.test(text)) throw bad(`has a header whose ${what} is not an octal number`)
  return Number.parseInt(text, 8)
}

function checksumOk(h: Buffer): boolean {
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] ?? 0)
  return sum === octal(h, 148, 8, 'checksum')
}

/** The entry's name made safe to join under the folder: relative, normalised, no `..`. */
function safeName(raw: string): string {
  if (raw === '' || raw.includes('\0') || raw.includes('\\')) throw bad('names an empty or unusual path', raw)
  if (raw.startsWith('/')) throw bad('names an absolute path', raw)
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.')
  if (parts.includes('..')) throw bad('names a path with ..', raw)
  if (parts.length === 0) return ''
  return parts.join('/')
}

/** Refuses an entry whose parent folders (inside `root`) include a symlink or a file. */
async function checkParents(root: string, name: string): Promise<void> {
  const parts = name.split('/').slice(0, -1)
  let path = root
  for (const part of parts) {
    path = posix.join(path, part)
    const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined
      throw err
    })
    if (st === undefined) return
    if (st.isSymbolicLink()) throw bad('writes through a symlink', name)
    if (!st.isDirectory()) throw bad('writes under a file', name)
  }
}

/**
 * Unpacks the tarball at `tarPath` into `root` (an empty folder that exists). Throws BAD_IMAGE /
 * PAYLOAD_TOO_LARGE; the caller removes `root` then (it unpacks into a temporary folder).
 */
export async function unpackTar(tarPath: string, root: string, limits: UnpackLimits): Promise<UnpackResult> {
  const fh = await open(tarPath, 'r')
  try {
    const size = (await fh.stat()).size
    const header = Buffer.alloc(BLOCK)
    const seen = new Set<string>()
    let offset = 0
    let entries = 0
    let files = 0
    let bytes = 0
    for (;;) {
      if (offset + BLOCK > size) throw bad('ends without its end-of-archive blocks (truncated?)')
      await fh.read(header, 0, BLOCK, offset)
      offset += BLOCK
      if (header.every((b) => b === 0)) break
      if (!checksumOk(header)) throw bad(`has a header with a wrong checksum at byte ${offset - BLOCK}`)
      const magic = field(header, 257, 6)
      if (magic !== 'ustar' && magic !== 'ustar ') throw bad('is not a ustar archive')
      const prefix = magic === 'ustar' ? field(header, 345, 155) : ''
      const rawName = prefix ? `${prefix}/${field(header, 0, 100)}` : field(header, 0, 100)
      const type = String.fromCharCode(header[156] ?? 0)
      const dataSize = octal(header, 124, 12, 'size')
      const padded = Math.ceil(dataSize / BLOCK) * BLOCK
      if (offset + padded > size)
        throw bad(`is truncated: entry needs ${dataSize} bytes past the end`, rawName)
      if (++entries > limits.maxEntries)
        throw new ShoalError(
          'PAYLOAD_TOO_LARGE',
          `the image tarball has more than ${limits.maxEntries} entries`,
        )
      const name = safeName(rawName)
      if (name === '') {
        if (type !== '5') throw bad('names the folder itself as a file', rawName)
        offset += padded
        continue
      }
      if (seen.has(name)) throw bad('lists an entry twice', rawName)
      seen.add(name)
      await checkParents(root, name)
      const target = posix.join(root, name)
      if (type === '5') {
        await mkdir(target, { recursive: true, mode: 0o755 })
      } else if (type === '0' || type === '\0' || type === '7') {
        bytes += dataSize
        if (bytes > limits.maxBytes)
          throw new ShoalError(
            'PAYLOAD_TOO_LARGE',
            `the image unpacks to more than ${limits.maxBytes} bytes; nothing was run`,
          )
        await mkdir(posix.dirname(target), { recursive: true, mode: 0o755 })
        const mode = octal(header, 100, 8, 'mode') & 0o111 ? 0o755 : 0o644
        await copyOut(fh, offset, dataSize, target, mode)
        files++
      } else if (type === '2') {
        const link = field(header, 157, 100)
        const resolved = posix.normalize(posix.join(posix.dirname(name), link))
        if (link === '' || link.startsWith('/') || resolved === '..' || resolved.startsWith('../'))
          throw bad(`has a symlink pointing out of the image (${printable(link)})`, rawName)
        await mkdir(posix.dirname(target), { recursive: true, mode: 0o755 })
        await symlink(link, target)
      } else {
        throw bad(`has an entry of unsupported type ${JSON.stringify(type)} (${typeName(type)})`, rawName)
      }
      offset += padded
    }
    return { files, bytes }
  } finally {
    await fh.close()
  }
}

function typeName(type: string): string {
  const names: Record<string, string> = {
    '1': 'hard link',
    '3': 'character device',
    '4': 'block device',
    '6': 'FIFO',
    x: 'pax header: pack with --format=ustar',
    g: 'pax global header: pack with --format=ustar',
    L: 'GNU long name: pack with --format=ustar',
    K: 'GNU long link name',
    S: 'GNU sparse file',
  }
  return names[type] ?? 'unknown'
}

/** Copies `length` bytes at `offset` of the tarball into a new file (never an existing one). */
async function copyOut(
  src: Awaited<ReturnType<typeof open>>,
  offset: number,
  length: number,
  path: string,
  mode: number,
): Promise<void> {
  // 'wx': an entry never replaces or follows anything already there (a symlink included).
  const out = await open(path, 'wx', mode)
  try {
    const buf = Buffer.alloc(Math.min(COPY_CHUNK, Math.max(length, 1)))
    let done = 0
    while (done < length) {
      const want = Math.min(buf.length, length - done)
      const { bytesRead } = await src.read(buf, 0, want, offset + done)
      if (bytesRead !== want) throw bad('is truncated')
      await out.write(buf, 0, want)
      done += want
    }
  } finally {
    await out.close()
  }
}
