/**
 * PullCLI's single-file rules against a real herd and agent on loopback: every --is-cover /
 * --new-name combination, the flag file (after the data, never on failure), a target that
 * already holds the bytes (source local), mode and mtime, and the local refusals (an
 * unwritable --dst-path, a --new-name that is a path) that fail at once, before the agent is
 * asked anything.
 */
import { randomBytes } from 'node:crypto'
import { type FSWatcher, watch } from 'node:fs'
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { pull } from '../../lib/cli/pull.js'
import { tempDir } from '../helpers/files.js'
import { deadAddress, pushBytes, startHerdAndAgent } from '../helpers/pull-cluster.js'

const root = await tempDir(t)
const { herd, agent } = await startHerdAndAgent(t, root)
const bytes = randomBytes(300_000)
const other = Buffer.from('an older file under the same name\n')
const { tag, digest } = await pushBytes(herd, root, 'prices.csv', bytes)
const TAG = tag.toString()
const dead = await deadAddress()

let n = 0
async function freshDir(files: Record<string, Buffer> = {}): Promise<string> {
  const dir = join(root, `out-${++n}`)
  await mkdir(dir)
  for (const [name, data] of Object.entries(files)) await writeFile(join(dir, name), data)
  return dir
}

async function contents(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const name of (await readdir(dir)).sort()) {
    const data = await readFile(join(dir, name))
    out[name] = data.equals(bytes) ? 'pulled' : data.equals(other) ? 'other' : `? ${data.length} bytes`
  }
  return out
}

interface Row {
  name: string
  before: Record<string, Buffer>
  isCover?: boolean
  newName?: string
  /** What the folder holds afterwards. */
  after: Record<string, string>
  path?: string
  error?: string
}

const rows: Row[] = [
  { name: 'no file, cover', before: {}, after: { 'prices.csv': 'pulled' }, path: 'prices.csv' },
  {
    name: 'no file, no cover',
    before: {},
    isCover: false,
    after: { 'prices.csv': 'pulled' },
    path: 'prices.csv',
  },
  {
    name: 'no file, no cover, a new name: the own name is free, so it is used',
    before: {},
    isCover: false,
    newName: 'new.csv',
    after: { 'prices.csv': 'pulled' },
    path: 'prices.csv',
  },
  {
    name: 'only the new name exists, no cover: the own name is used, the other file kept',
    before: { 'new.csv': other },
    isCover: false,
    newName: 'new.csv',
    after: { 'new.csv': 'other', 'prices.csv': 'pulled' },
    path: 'prices.csv',
  },
  {
    name: 'existing file, cover: replaced',
    before: { 'prices.csv': other },
    after: { 'prices.csv': 'pulled' },
    path: 'prices.csv',
  },
  {
    name: 'existing file, cover and a new name: replaced (the new name is for isCover false)',
    before: { 'prices.csv': other },
    newName: 'new.csv',
    after: { 'prices.csv': 'pulled' },
    path: 'prices.csv',
  },
  {
    name: 'existing file, no cover, no new name: refused, nothing touched',
    before: { 'prices.csv': other },
    isCover: false,
    after: { 'prices.csv': 'other' },
    error: 'ALREADY_EXISTS',
  },
  {
    name: 'existing file, no cover, a free new name: written beside it',
    before: { 'prices.csv': other },
    isCover: false,
    newName: 'new.csv',
    after: { 'new.csv': 'pulled', 'prices.csv': 'other' },
    path: 'new.csv',
  },
  {
    name: 'existing file and new name, no cover: refused, both kept',
    before: { 'prices.csv': other, 'new.csv': other },
    isCover: false,
    newName: 'new.csv',
    after: { 'new.csv': 'other', 'prices.csv': 'other' },
    error: 'ALREADY_EXISTS',
  },
]

t.test('--is-cover / --new-name, every combination', async (t) => {
  for (const row of rows) {
    const dir = await freshDir(row.before)
    const opts = { tag: TAG, dstPath: dir, isCover: row.isCover, newName: row.newName }
    if (row.error) {
      // A dead agent: the refusal must come before the agent is asked anything.
      await t.rejects(pull({ ...opts, dstHost: dead }), { code: row.error }, row.name)
    } else {
      const r = await pull({ ...opts, dstHost: agent.url })
      t.equal(r.path, join(dir, row.path ?? ''), `${row.name}: path`)
      t.equal(r.source, 'swarm', `${row.name}: source`)
      t.ok(r.digest.equals(digest))
      t.equal(r.size, bytes.length)
      t.equal(r.flag, undefined, 'no flag file without hasFlag F')
    }
    t.same(await contents(dir), row.after, `${row.name}: the folder afterwards, no temp file`)
  }
})

t.test('a folder under the file name is not covered: refused before the agent is asked', async (t) => {
  const dir = await freshDir()
  await mkdir(join(dir, 'prices.csv'))
  await t.rejects(pull({ tag: TAG, dstPath: dir, dstHost: dead }), {
    code: 'ALREADY_EXISTS',
    message: /is a directory; a file cannot replace it/,
  })
  t.same(await readdir(dir), ['prices.csv'])
})

t.test('a target that already holds the bytes is not fetched again: source local', async (t) => {
  const dir = await freshDir({ 'prices.csv': bytes })
  const before = await stat(join(dir, 'prices.csv'))
  const r = await pull({ tag: TAG, dstPath: dir, dstHost: agent.url, hasFlag: 'F' })
  t.equal(r.source, 'local')
  t.ok(r.digest.equals(digest))
  t.equal(r.size, bytes.length)
  const after = await stat(join(dir, 'prices.csv'))
  t.equal(after.ino, before.ino, 'the same file, not a replacement')
  t.equal(after.mtimeMs, before.mtimeMs)
  t.equal(r.flag, join(dir, 'prices.csv.flag'), 'the flag is still written when asked')
  t.same(await readdir(dir), ['prices.csv', 'prices.csv.flag'])

  // Same size, other bytes: fetched.
  const flipped = Buffer.from(bytes)
  flipped.writeUInt8(flipped.readUInt8(1000) ^ 0xff, 1000)
  const dir2 = await freshDir({ 'prices.csv': flipped })
  const again = await pull({ tag: TAG, dstPath: dir2, dstHost: agent.url })
  t.equal(again.source, 'swarm')
  t.same(await contents(dir2), { 'prices.csv': 'pulled' })
})

/** Names of entries created or renamed in `dir`, in the order the kernel reported them. */
function recordEntries(dir: string): { names: string[]; close(): void } {
  const names: string[] = []
  const w: FSWatcher = watch(dir, (event, name) => {
    if (event === 'rename' && name) names.push(name.toString())
  })
  return { names, close: () => w.close() }
}

async function until(what: string, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

t.test('--has-flag F: the flag comes after the data; N: none; a failed pull writes none', async (t) => {
  const dir = await freshDir()
  const seen = recordEntries(dir)
  t.teardown(() => seen.close())
  const r = await pull({
    tag: TAG,
    dstPath: dir,
    dstHost: agent.url,
    hasFlag: 'F',
    flag: { suffix: '.flag', content: 'json' },
  })
  const flag = join(dir, 'prices.csv.flag')
  t.equal(r.flag, flag)
  t.same(JSON.parse(await readFile(flag, 'utf8')), {
    name: 'prices.csv',
    digest: digest.toString(),
    size: bytes.length,
    tag: TAG,
  })
  await until('the flag in the folder events', () => seen.names.includes('prices.csv.flag'))
  const data = seen.names.indexOf('prices.csv')
  t.ok(data >= 0 && data < seen.names.indexOf('prices.csv.flag'), 'the data file is in place first', {
    events: seen.names,
  })
  t.same((await readdir(dir)).sort(), ['prices.csv', 'prices.csv.flag'], 'no temp file left')
  t.ok((await readFile(join(dir, 'prices.csv'))).equals(bytes))

  // A configured suffix and the digest line.
  const dir2 = await freshDir()
  const r2 = await pull({
    tag: TAG,
    dstPath: dir2,
    dstHost: agent.url,
    hasFlag: 'F',
    flag: { suffix: '.done', content: 'digest' },
  })
  t.equal(r2.flag, join(dir2, 'prices.csv.done'))
  t.equal(await readFile(join(dir2, 'prices.csv.done'), 'utf8'), `${digest.hex}  prices.csv\n`)

  // N: none.
  const dir3 = await freshDir()
  const r3 = await pull({ tag: TAG, dstPath: dir3, dstHost: agent.url, hasFlag: 'N' })
  t.equal(r3.flag, undefined)
  t.same(await readdir(dir3), ['prices.csv'])

  // Failures: an unknown tag, a dead agent, a taken name. No flag, no file.
  const dir4 = await freshDir()
  await t.rejects(pull({ tag: 'h-/d-missing.csv:v1', dstPath: dir4, dstHost: agent.url, hasFlag: 'F' }), {
    code: 'TAG_NOT_FOUND',
  })
  await t.rejects(pull({ tag: TAG, dstPath: dir4, dstHost: dead, hasFlag: 'F' }), { code: 'UNAVAILABLE' })
  t.same(await readdir(dir4), [], 'nothing written')
  const dir5 = await freshDir({ 'prices.csv': other })
  await t.rejects(pull({ tag: TAG, dstPath: dir5, dstHost: agent.url, hasFlag: 'F', isCover: false }), {
    code: 'ALREADY_EXISTS',
  })
  t.same(await contents(dir5), { 'prices.csv': 'other' }, 'no flag beside the kept file')

  // Covering yesterday's file: yesterday's flag goes before the new data takes the name, so a
  // consumer never reads the flag of one version beside the data of another.
  const dir6 = await freshDir({ 'prices.csv': other, 'prices.csv.flag': Buffer.from('yesterday') })
  const watch6 = recordEntries(dir6)
  t.teardown(() => watch6.close())
  await pull({ tag: TAG, dstPath: dir6, dstHost: agent.url, hasFlag: 'F' })
  t.same(await contents(dir6), { 'prices.csv': 'pulled', 'prices.csv.flag': '? 0 bytes' })
  const flagEvents = () => watch6.names.flatMap((name, i) => (name === 'prices.csv.flag' ? [i] : []))
  await until('the new flag in the folder events', () => flagEvents().length >= 2)
  const placed = watch6.names.indexOf('prices.csv')
  const [gone = -1, written = -1] = flagEvents()
  t.ok(gone < placed && placed < written, 'old flag gone, data placed, new flag', {
    events: watch6.names,
  })

  // A flag name over the 255-byte limit is refused before anything is fetched.
  const long = `${'x'.repeat(250)}.csv`
  const dir7 = await freshDir()
  await t.rejects(pull({ tag: `h-/d-${long}:v1`, dstPath: dir7, dstHost: dead, hasFlag: 'F' }), {
    code: 'USAGE',
    message: /flag file .* more than 255: use --new-name/,
  })
  t.same(await readdir(dir7), [])
})

t.test('mode and mtime from the tag are given to the file before it is placed', async (t) => {
  const dir = await freshDir()
  const mtimeMs = Date.parse('2026-11-21T06:00:00Z')
  const r = await pull({ tag: TAG, dstPath: dir, dstHost: agent.url, mode: 0o100640, mtimeMs })
  const st = await stat(r.path)
  t.equal(st.mode & 0o7777, 0o640)
  t.equal(st.mtimeMs, mtimeMs)
})

t.test('an unwritable --dst-path fails at once with a clear error', async (t) => {
  const file = join(root, 'a-file')
  await writeFile(file, 'x')
  const cases: [string, string, RegExp][] = [
    ['/proc', '/proc/1/nope', /^cannot write into --dst-path \/proc\/1\/nope: .*; nothing was written$/],
    ['a file in the way', file, /is not a directory/],
    ['a file as a parent', join(file, 'sub'), /a component of the path is not a directory/],
  ]
  if (process.getuid?.() === 0) {
    // root ignores permission bits, so a read-only folder is writable for it: nothing to test.
    t.comment('skipping the read-only folder: running as root, which may write into it anyway')
  } else {
    const ro = join(root, 'read-only')
    await mkdir(ro)
    await chmod(ro, 0o555)
    t.teardown(() => chmod(ro, 0o755))
    cases.push(['a read-only folder', ro, /permission denied/])
  }
  for (const [name, dstPath, message] of cases) {
    const started = Date.now()
    await t.rejects(pull({ tag: TAG, dstPath, dstHost: agent.url, timeoutSeconds: 60 }), {
      code: 'INVALID_PATH',
      message,
    })
    const seconds = (Date.now() - started) / 1000
    t.ok(seconds < 1, `${name}: failed after ${seconds} s`)
  }
})

t.test('--new-name must be a name, not a path: refused before anything is fetched', async (t) => {
  const dir = await freshDir({ 'prices.csv': other })
  for (const newName of ['../x', 'a/b', '..', '.', '', 'a\\b', '/etc/passwd']) {
    await t.rejects(pull({ tag: TAG, dstPath: dir, dstHost: dead, isCover: false, newName }), {
      code: 'INVALID_PATH',
      message: /^invalid --new-name /,
    })
  }
  t.same(await contents(dir), { 'prices.csv': 'other' })
  t.same((await readdir(root)).includes('x'), false, 'nothing written beside --dst-path')
})
