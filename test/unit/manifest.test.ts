/**
 * Directory manifests: the canonical form (same tree, same bytes, same digest), the walk's
 * refusals (links, fifos), and parseManifest on hostile input: every unsafe path and malformed
 * field is BAD_MANIFEST with a message naming it.
 */
import { execFileSync } from 'node:child_process'
import { chmod, mkdir, symlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import {
  buildManifest,
  encodeManifest,
  MAX_MANIFEST_BYTES,
  type Manifest,
  parseManifest,
  pathProblem,
} from '../../lib/cli/manifest.js'
import { Digest } from '../../lib/core/index.js'
import { tempDir } from '../helpers/files.js'

const D = Digest.fromBuffer(Buffer.from('x')).toString()
const root = { mode: 0o755, mtimeMs: 1_700_000_000_000 }

function file(path: string, extra: Record<string, unknown> = {}) {
  return { path, type: 'file', size: 1, mode: 0o644, mtimeMs: 1, digest: D, ...extra }
}
function dir(path: string, extra: Record<string, unknown> = {}) {
  return { path, type: 'dir', size: 0, mode: 0o755, mtimeMs: 1, ...extra }
}
function raw(entries: unknown[], top: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ version: 1, root, entries, ...top }))
}

t.test('a valid manifest parses, and encodes back to the same bytes', async (t) => {
  const bytes = raw([dir('a'), dir('a/b'), file('a/b/c.txt'), file('a/d'), dir('e'), file('交易.txt')])
  const m = parseManifest(bytes)
  t.equal(m.entries.length, 6)
  t.same(encodeManifest(m), bytes, 'canonical: the same bytes back')
  // Entries given out of order encode sorted: the same tree gives the same digest.
  const shuffled: Manifest = { ...m, entries: [...m.entries].reverse() }
  t.same(encodeManifest(shuffled), bytes)
})

t.test('hostile paths are refused, naming the entry', async (t) => {
  const cases: [string, unknown[], RegExp][] = [
    ['dot-dot', [file('../x')], /"\.\." component/],
    ['dot-dot inside', [dir('a'), file('a/../../x')], /"\.\." component/],
    ['absolute', [file('/etc/passwd')], /absolute path/],
    ['empty', [file('')], /empty path/],
    ['empty component', [dir('a'), file('a//b')], /empty component/],
    ['trailing slash', [dir('a/')], /empty component/],
    ['dot', [file('./x')], /"\." component/],
    ['backslash', [file('a\\..\\x')], /backslash/],
    ['NUL', [file('a\0b')], /NUL/],
    ['long component', [file('x'.repeat(256))], /longer than 255 bytes/],
    ['lone surrogate', [file('a\ud800')], /UTF-8/],
    ['duplicate', [file('a'), file('a')], /listed twice/],
    ['file and dir of one name', [dir('a'), file('a')], /listed twice/],
    ['out of order', [file('b'), file('a')], /out of order/],
    ['parent missing', [file('a/b')], /parent folder "a" is not listed/],
    ['parent is a file', [file('a'), file('a/b')], /parent "a" is a file/],
  ]
  for (const [name, entries, message] of cases)
    t.throws(() => parseManifest(raw(entries)), { code: 'BAD_MANIFEST', message }, name)
})

t.test('fields are checked', async (t) => {
  const cases: [string, Buffer, RegExp][] = [
    ['not JSON', Buffer.from('{'), /not JSON/],
    ['an array', Buffer.from('[]'), /not a JSON object/],
    ['version', raw([], { version: 2 }), /version 2 is not supported/],
    ['unknown field', raw([], { extra: 1 }), /unknown field "extra"/],
    ['no root', Buffer.from(JSON.stringify({ version: 1, entries: [] })), /"root" is not an object/],
    ['root mode', raw([], { root: { mode: 0o4755, mtimeMs: 1 } }), /root\.mode/],
    ['entries', raw([], { entries: {} }), /"entries" is not an array/],
    ['type', raw([file('a', { type: 'link' })]), /"type" must be/],
    ['mode setuid', raw([file('a', { mode: 0o4755 })]), /"mode"/],
    ['mode string', raw([file('a', { mode: '755' })]), /"mode"/],
    ['size', raw([file('a', { size: -1 })]), /"size"/],
    ['size fraction', raw([file('a', { size: 1.5 })]), /"size"/],
    ['mtime', raw([file('a', { mtimeMs: 'now' })]), /"mtimeMs"/],
    ['digest missing', raw([file('a', { digest: undefined })]), /needs a "digest"/],
    ['digest bad', raw([file('a', { digest: 'md5:00' })]), /not a sha256 digest/],
    ['dir with digest', raw([dir('a', { digest: D })]), /a dir has no digest/],
    ['dir with size', raw([dir('a', { size: 3 })]), /a dir has size 0/],
    ['entry field', raw([file('a', { owner: 'root' })]), /unknown field "owner"/],
    ['entry not an object', raw(['a']), /entry 0 is not an object/],
  ]
  for (const [name, bytes, message] of cases)
    t.throws(() => parseManifest(bytes), { code: 'BAD_MANIFEST', message }, name)
  t.throws(() => parseManifest(Buffer.alloc(MAX_MANIFEST_BYTES + 1, 0x20)), {
    code: 'BAD_MANIFEST',
    message: /more than the limit/,
  })
})

t.test('pathProblem accepts ordinary relative paths', async (t) => {
  for (const p of ['a', 'a/b/c', '.hidden', 'a..b', '...', 'x y/交易数据.txt', 'a\nb'])
    t.equal(pathProblem(p), undefined, p)
})

t.test('buildManifest walks a tree: dirs, empty dirs, modes, sizes, digests', async (t) => {
  const base = await tempDir(t)
  const src = join(base, 'tree')
  await mkdir(join(src, 'sub/deeper'), { recursive: true })
  await mkdir(join(src, 'empty'))
  await writeFile(join(src, 'run.sh'), '#!/bin/sh\n')
  await chmod(join(src, 'run.sh'), 0o755)
  await writeFile(join(src, 'sub/secret'), 'psst')
  await chmod(join(src, 'sub/secret'), 0o600)
  await writeFile(join(src, 'sub/deeper/交易数据.txt'), 'x')
  await utimes(join(src, 'sub/secret'), 1_600_000_000, 1_600_000_000)
  const m = await buildManifest(src, { concurrency: 2 })
  t.same(
    m.entries.map((e) => [e.path, e.type]),
    [
      ['empty', 'dir'],
      ['run.sh', 'file'],
      ['sub', 'dir'],
      ['sub/deeper', 'dir'],
      ['sub/deeper/交易数据.txt', 'file'],
      ['sub/secret', 'file'],
    ],
  )
  const byPath = new Map(m.entries.map((e) => [e.path, e]))
  t.equal(byPath.get('run.sh')?.mode, 0o755)
  t.equal(byPath.get('sub/secret')?.mode, 0o600)
  t.equal(byPath.get('sub/secret')?.size, 4)
  t.equal(byPath.get('sub/secret')?.mtimeMs, 1_600_000_000_000)
  t.equal(byPath.get('sub/deeper/交易数据.txt')?.digest, D)
  // What the walk builds, parseManifest accepts; and a second walk gives the same bytes.
  t.same(parseManifest(encodeManifest(m)), m)
  t.same(encodeManifest(await buildManifest(src)), encodeManifest(m))
})

t.test('buildManifest refuses links and fifos, naming them', async (t) => {
  const base = await tempDir(t)
  const a = join(base, 'a')
  await mkdir(join(a, 'x'), { recursive: true })
  await writeFile(join(a, 'x/ok'), 'ok')
  await symlink('/etc/passwd', join(a, 'x/link'))
  await t.rejects(buildManifest(a), {
    code: 'INVALID_PATH',
    message: /x\/link: it is a symbolic link; a directory push carries regular files and folders only/,
  })
  const b = join(base, 'b')
  await mkdir(b)
  execFileSync('mkfifo', [join(b, 'pipe')])
  await t.rejects(buildManifest(b), { code: 'INVALID_PATH', message: /b\/pipe: it is a fifo/ })
  await writeFile(join(base, 'plain'), '')
  await t.rejects(buildManifest(join(base, 'plain')), { code: 'INVALID_PATH', message: /is not a folder/ })
})
