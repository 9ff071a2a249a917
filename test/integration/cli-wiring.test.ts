/**
 * The CLIs wired to what the tag says, through the real programs, herd and agent: a directory
 * pushed and pulled with PushCLI/PullCLI and flag files both ways, `--res-desc` shown by pull,
 * a file's mode and mtime kept, `--res-type` checked against the tag, and an immutable version
 * pulled while build-index is down (the agent's tag cache).
 */
import { chmod, mkdir, readFile, stat, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { pullProgram, pushProgram } from '../../lib/cli/programs.js'
import { startTestAgent } from '../helpers/agent.js'
import { cliRunner } from '../helpers/cli-run.js'
import { tempDir } from '../helpers/files.js'
import { startPushFront, startTestHerd } from '../helpers/herd.js'

const root = await tempDir(t)
const herd = await startTestHerd(t, root)

async function startAgent(t: Test, dataDir: string, buildIndex: string): Promise<string> {
  return (await startTestAgent(t, { dataDir, trackers: [herd.urls.tracker], buildIndex })).url
}

const run = cliRunner(root)
const PROXY = herd.urls.proxy
const AGENT = await startAgent(t, join(root, 'agent'), herd.urls.buildIndex)

t.test('a directory through PushCLI and PullCLI, with flag files both ways', async (t) => {
  const dir = await tempDir(t)
  const src = join(dir, 'daily')
  await mkdir(join(src, 'sub', 'empty'), { recursive: true })
  await writeFile(join(src, 'a.csv'), 'a,b\n1,2\n')
  await writeFile(join(src, 'sub', '交易数据.txt'), 'non-ascii name\n')
  await chmod(join(src, 'a.csv'), 0o640)
  // The producer's flag: push waits for it.
  await writeFile(`${src}.flag`, '')
  const pushed = await run(pushProgram, [
    'push',
    '--json',
    '--dst-host',
    PROXY,
    '--res-type',
    'directory',
    '--has-flag',
    'F',
    '--res-desc',
    'daily reference data',
    '--version',
    'd1',
    src,
  ])
  t.equal(pushed.code, 0, pushed.err)
  const p = JSON.parse(pushed.out)
  t.equal(p.files, 2)
  t.equal(p.newFiles, 2)
  const out = join(dir, 'out')
  const pulled = await run(pullProgram, [
    'pull',
    '--json',
    '--dst-host',
    AGENT,
    '--dst-path',
    out,
    '--has-flag',
    'F',
    p.tag,
  ])
  t.equal(pulled.code, 0, pulled.err)
  const r = JSON.parse(pulled.out)
  t.equal(r.files, 2)
  t.equal(r.desc, 'daily reference data', 'pull shows the stored description')
  t.equal(r.path, join(out, 'daily'))
  t.equal(await readFile(join(out, 'daily', 'sub', '交易数据.txt'), 'utf8'), 'non-ascii name\n')
  t.equal((await stat(join(out, 'daily', 'a.csv'))).mode & 0o777, 0o640, 'mode kept')
  t.ok((await stat(join(out, 'daily', 'sub', 'empty'))).isDirectory(), 'empty folder kept')
  t.equal(r.flag, join(out, 'daily.flag'))
  t.ok((await stat(r.flag)).isFile(), 'the consumer flag is written after the tree')

  const listed = await run(pullProgram, ['list', '--json', '--dst-host', AGENT, p.tag.split(':')[0]])
  t.equal(listed.code, 0, listed.err)
  t.same(JSON.parse(listed.out), {
    tags: [{ tag: p.tag, digest: p.digest, type: 'directory', desc: 'daily reference data' }],
    more: false,
  })
  const human = await run(pullProgram, ['list', '--dst-host', AGENT, p.tag])
  t.equal(human.out, `${p.tag}\tdirectory\t${p.digest}\tdaily reference data`, 'list shows the description')
  const asFile = await run(pullProgram, [
    'pull',
    '--dst-host',
    AGENT,
    '--dst-path',
    out,
    '--res-type',
    'file',
    p.tag,
  ])
  t.equal(asFile.code, 2, 'a directory tag pulled as a file is a usage error')
  t.match(asFile.err, /is a directory, not a file: pull it with --res-type directory/)
})

t.test('a file keeps its mode, mtime and description', async (t) => {
  const dir = await tempDir(t)
  const src = join(dir, 'prices.csv')
  await writeFile(src, 'px\n')
  await chmod(src, 0o751)
  const mtime = new Date('2026-01-02T03:04:05Z')
  await utimes(src, mtime, mtime)
  const pushed = await run(pushProgram, ['push', '--json', '--dst-host', PROXY, '--res-desc', 'prices', src])
  t.equal(pushed.code, 0, pushed.err)
  const { tag } = JSON.parse(pushed.out)
  const out = join(dir, 'out')
  const pulled = await run(pullProgram, [
    'pull',
    '--json',
    '--dst-host',
    AGENT,
    '--dst-path',
    out,
    '--tag',
    tag,
  ])
  t.equal(pulled.code, 0, pulled.err)
  const r = JSON.parse(pulled.out)
  t.equal(r.desc, 'prices')
  const st = await stat(join(out, 'prices.csv'))
  t.equal(st.mode & 0o7777, 0o751, 'mode kept')
  t.equal(st.mtime.getTime(), mtime.getTime(), 'mtime kept')
  const asDir = await run(pullProgram, [
    'pull',
    '--dst-host',
    AGENT,
    '--dst-path',
    out,
    '--res-type',
    'directory',
    '--tag',
    tag,
  ])
  t.equal(asDir.code, 2)
  t.match(asDir.err, /is a file, not a directory/)
})

t.test('an immutable version pulls while build-index is down; latest does not', async (t) => {
  const dir = await tempDir(t)
  // A build-index and proxy this test can stop, and an agent that asks that build-index.
  const front = await startPushFront(t, [herd.urls.origin])
  const PROXY = front.proxy.url
  const AGENT = await startAgent(t, join(dir, 'agent'), front.buildIndex.url)
  const src = join(dir, 'fixed.bin')
  await writeFile(src, 'immutable bytes\n')
  for (const v of ['v1', 'latest']) {
    const pushed = await run(pushProgram, ['push', '--dst-host', PROXY, '--version', v, src])
    t.equal(pushed.code, 0, pushed.err)
  }
  const tagOf = async (v: string) => {
    const r = await run(pushProgram, ['push', '--json', '--dst-host', PROXY, '--version', v, src])
    return JSON.parse(r.out).tag as string
  }
  const v1 = await tagOf('v1')
  const latest = await tagOf('latest')
  const first = await run(pullProgram, [
    'pull',
    '--dst-host',
    AGENT,
    '--dst-path',
    join(dir, 'a'),
    '--tag',
    v1,
  ])
  t.equal(first.code, 0, first.err)
  await front.buildIndex.stop()
  const offline = await run(pullProgram, [
    'pull',
    '--json',
    '--dst-host',
    AGENT,
    '--dst-path',
    join(dir, 'b'),
    '--tag',
    v1,
  ])
  t.equal(offline.code, 0, offline.err)
  t.equal(await readFile(join(dir, 'b', 'fixed.bin'), 'utf8'), 'immutable bytes\n')
  const moving = await run(pullProgram, [
    'pull',
    '--dst-host',
    AGENT,
    '--dst-path',
    join(dir, 'c'),
    '--tag',
    latest,
  ])
  t.equal(moving.code, 6, `latest needs build-index: ${moving.err}`)
})
