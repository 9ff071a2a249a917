/**
 * End to end as a user runs it: the built binaries, a devcluster of separate processes, and
 * PushCLI / PullCLI / RemoveCLI driven from the command line.
 */
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { digestFile } from '../../lib/core/index.js'
import { randomFile, tempDir } from '../helpers/files.js'

const exec = promisify(execFile)
const bin = (name: string) => resolve('dist', 'cmd', `${name}.js`)
// Ports away from the devcluster defaults, so a developer's running cluster is not disturbed.
const BASE = 25000
const AGENT_BASE = 26000
const PROXY = `127.0.0.1:${BASE}`
const agentApi = (n: number) => `127.0.0.1:${AGENT_BASE + 1000 * (n - 1) + 2}`

async function cli(name: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [bin(name), ...args], { timeout: 120_000 })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

t.test('devcluster up → push → pull on two agents → remove → down', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-e2e-'))
  const workdir = join(dir, 'cluster')
  // One teardown, in this order: stop the processes (their state lives in dir), then remove dir.
  t.teardown(async () => {
    await cli('shoal', ['devcluster', 'down', '--workdir', workdir])
    await rm(dir, { recursive: true, force: true })
  })
  const upArgs = [
    'devcluster',
    'up',
    '--agents',
    '2',
    '--workdir',
    workdir,
    '--base-port',
    String(BASE),
    '--agent-base-port',
    String(AGENT_BASE),
  ]

  const started = await cli('shoal', upArgs)
  t.equal(started.code, 0, `devcluster up: ${started.stderr}`)
  const logs = await readdir(join(workdir, 'logs'))
  t.same(logs.sort(), ['agent-1.log', 'agent-2.log', 'herd.log'], 'one log file per process')

  const st = await cli('shoal', ['devcluster', 'status', '--workdir', workdir])
  t.equal((st.stdout.match(/ ready /g) ?? []).length, 3, `status shows 3 ready processes:\n${st.stdout}`)

  const src = join(dir, 'data', '交易数据.txt')
  await mkdir(join(dir, 'data'))
  await randomFile(src, 5 << 20)
  const pushed = await cli('PushCLI', [
    'push',
    '--src-path',
    src,
    '--src-host',
    '192.168.1.1',
    '--version',
    'v1',
    '--dst-host',
    PROXY,
  ])
  t.equal(pushed.code, 0, `push: ${pushed.stderr}`)
  const tag = /^tag:\s+(.+)$/m.exec(pushed.stdout)?.[1] ?? ''
  t.equal(tag, `192.168.1.1-${join(dir, 'data')}-交易数据.txt:v1`)
  const { digest } = await digestFile(src)
  t.match(pushed.stdout, `digest: ${digest}`)
  t.match(pushed.stdout, `size:   ${5 << 20}`)

  for (const n of [1, 2]) {
    const out = join(dir, `out-${n}`)
    const pulled = await cli('PullCLI', ['pull', '--tag', tag, '--dst-path', out, '--dst-host', agentApi(n)])
    t.equal(pulled.code, 0, `pull on agent ${n}: ${pulled.stderr}`)
    const files = await readdir(out)
    t.same(files, ['交易数据.txt'], 'only the final file: no temp file left behind')
    t.ok((await digestFile(join(out, '交易数据.txt'))).digest.equals(digest), `agent ${n} copy verified`)
  }

  const missing = await cli('PullCLI', [
    'pull',
    '--tag',
    '192.168.1.1-/data-nothing.txt:v1',
    '--dst-path',
    join(dir, 'x'),
    '--dst-host',
    agentApi(1),
  ])
  t.equal(missing.code, 1, 'unknown tag exits 1')
  t.equal(
    missing.stderr.trim(),
    'PullCLI: tag not found: 192.168.1.1-/data-nothing.txt:v1',
    'one clear line, no stack',
  )

  const removed = await cli('RemoveCLI', ['remove', '--tag', tag, '--dst-host', PROXY])
  t.equal(removed.code, 0, `remove: ${removed.stderr}`)
  t.match(removed.stdout, `removed ${tag}`)
  const gone = await cli('PullCLI', [
    'pull',
    '--tag',
    tag,
    '--dst-path',
    join(dir, 'y'),
    '--dst-host',
    agentApi(1),
  ])
  t.equal(gone.code, 1)
  t.match(gone.stderr, `tag not found: ${tag}`)
  t.ok((await stat(join(dir, 'out-1', '交易数据.txt'))).isFile(), 'files already pulled stay')

  const stopped = await cli('shoal', ['devcluster', 'down', '--workdir', workdir])
  t.equal(stopped.code, 0)
  t.match(stopped.stdout, 'stopped 3 processes')
  const after = await cli('shoal', ['devcluster', 'status', '--workdir', workdir])
  t.match(after.stdout, 'not running')
})

t.test('user mistakes are one line and a non-zero exit', async (t) => {
  const dir = await tempDir(t, 'shoal-e2e-')
  const noFile = await cli('PushCLI', [
    'push',
    '--src-path',
    join(dir, 'absent.txt'),
    '--dst-host',
    '127.0.0.1:1',
  ])
  t.equal(noFile.code, 1)
  t.equal(noFile.stderr.trim(), `PushCLI: cannot push ${join(dir, 'absent.txt')}: no such file`)

  const badTag = await cli('PullCLI', ['pull', '--tag', 'h-/a/../etc-passwd', '--dst-path', dir])
  t.equal(badTag.code, 1)
  t.match(badTag.stderr, /^PullCLI: invalid tag .*"\.\." components\n$/)

  const noAgent = await cli('PullCLI', [
    'pull',
    '--tag',
    'h-/d-f.txt',
    '--dst-path',
    dir,
    '--dst-host',
    '127.0.0.1:1',
  ])
  t.equal(noAgent.code, 1)
  t.equal(
    noAgent.stderr,
    'PullCLI: cannot reach the agent at 127.0.0.1:1 (ECONNREFUSED: nothing listens there); is it running?\n',
  )

  const usage = await cli('PullCLI', ['pull', '--dst-path', dir])
  t.equal(usage.code, 2, 'a usage error exits 2')
  t.match(usage.stderr, "required option '--tag <tag>' not specified")

  const help = await cli('PushCLI', ['push', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, '--src-path <path>')

  const badConfig = await cli('shoal-agent', ['--config', join(dir, 'missing.yaml')])
  t.equal(badConfig.code, 1)
  t.match(badConfig.stderr, /^shoal-agent: config file not found/)
})
