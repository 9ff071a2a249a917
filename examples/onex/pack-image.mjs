#!/usr/bin/env node
/**
 * Packs the example node (examples/onex/node/) as a OneX node image: a ustar tarball of the
 * program and its manifest.json (the start command and the args template). Deterministic: entries
 * sorted by name, mtime 0, uid/gid 0, no user names, modes 0644/0755, so the same program always
 * gives the same bytes and the same digest. Prints `sha256:<hex>  <path>`.
 *
 *   node examples/onex/pack-image.mjs [--src examples/onex/node] [--out onex-node-image.tar]
 *   PushCLI push --src-path onex-node-image.tar --version v1   # then distribute it by tag / digest
 */
import { createHash } from 'node:crypto'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))

function header(name, size, mode, type) {
  const h = Buffer.alloc(512)
  let prefix = ''
  let base = name
  if (Buffer.byteLength(name) > 100) {
    // ustar splits a long name at a '/' into prefix (≤ 155) and name (≤ 100).
    const cut = name.lastIndexOf('/', 155)
    if (cut <= 0 || Buffer.byteLength(name.slice(cut + 1)) > 100)
      throw new Error(`name too long for ustar: ${name}`)
    prefix = name.slice(0, cut)
    base = name.slice(cut + 1)
  }
  const put = (text, offset, length) => h.write(text, offset, length, 'utf8')
  const octal = (n, length) => n.toString(8).padStart(length - 1, '0')
  put(base, 0, 100)
  put(`${octal(mode, 8)}\0`, 100, 8)
  put(`${octal(0, 8)}\0`, 108, 8)
  put(`${octal(0, 8)}\0`, 116, 8)
  put(`${octal(size, 12)}\0`, 124, 12)
  put(`${octal(0, 12)}\0`, 136, 12)
  h.fill(0x20, 148, 156) // the checksum counts its own field as spaces
  put(type, 156, 1)
  put('ustar\0', 257, 6)
  put('00', 263, 2)
  put(prefix, 345, 155)
  let sum = 0
  for (const byte of h) sum += byte
  put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8)
  return h
}

/** The files under `dir`, relative, '/'-separated, sorted; folders listed before their contents. */
async function walk(dir, root = dir) {
  const out = []
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
    a.name < b.name ? -1 : 1,
  )) {
    const path = join(dir, entry.name)
    const rel = relative(root, path).split('\\').join('/')
    if (entry.isDirectory()) out.push({ rel: `${rel}/`, path, dir: true }, ...(await walk(path, root)))
    else if (entry.isFile()) out.push({ rel, path, dir: false })
    else throw new Error(`${path}: only files and folders go into an image`)
  }
  return out
}

/** The image tarball of the program folder `src` (must hold manifest.json). */
export async function packImage(src) {
  const entries = await walk(src)
  if (!entries.some((e) => e.rel === 'manifest.json')) throw new Error(`${src} has no manifest.json`)
  const parts = []
  for (const e of entries) {
    if (e.dir) {
      parts.push(header(e.rel, 0, 0o755, '5'))
      continue
    }
    const data = await readFile(e.path)
    const executable = ((await stat(e.path)).mode & 0o111) !== 0
    parts.push(header(e.rel, data.length, executable ? 0o755 : 0o644, '0'), data)
    const pad = (512 - (data.length % 512)) % 512
    if (pad) parts.push(Buffer.alloc(pad))
  }
  parts.push(Buffer.alloc(1024)) // two zero blocks end the archive
  return Buffer.concat(parts)
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2)
  const opt = (name, fallback) => {
    const i = args.indexOf(name)
    return i >= 0 && args[i + 1] ? args[i + 1] : fallback
  }
  const src = opt('--src', join(here, 'node'))
  const out = opt('--out', 'onex-node-image.tar')
  const tar = await packImage(src)
  await writeFile(out, tar)
  process.stdout.write(`sha256:${createHash('sha256').update(tar).digest('hex')}  ${out}\n`)
}
