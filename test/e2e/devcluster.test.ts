/**
 * End to end as a user runs it: the built binaries, a devcluster of separate processes, and
 * PushCLI / PullCLI / RemoveCLI driven from the command line.
 */
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { digestFile } from '../../lib/core/index.js'
import { HERD_PORTS } from '../../lib/devcluster/layout.js'
import { randomFile, tempDir } from '../helpers/files.js'

const exec = promisify(execFile)
const bin = (name: string) => resolve('dist', 'cmd', `${name}.js`)

/** True when nothing listens on `port` (on any address). */
function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer()
    s.once('error', () => res(false))
    s.listen(port, () => s.close(() => res(true)))
  })
}

/**
 * Base ports for a devcluster of `agents` agents whose every port is free right now: away from
 * the devcluster defaults (a developer's running cluster is not disturbed) and below Linux's
 * ephemeral range, tried at random so that parallel runs rarely pick the same ones.
 */
async function freeBases(agents: number): Promise<{ base: number; agentBase: number }> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 20000 + 10 * Math.floor(Math.random() * 1000)
    const agentBase = base + HERD_PORTS
    const ports = Array.from({ length: HERD_PORTS }, (_, i) => base + i)
    for (let n = 0; n < agents; n++) ports.push(...[0, 1, 2].map((i) => agentBase + 1000 * n + i))
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return { base, agentBase }
  }
  throw new Error('no free ports for a devcluster')
}

const agentApiOf = (agentBase: number, n: number) => `127.0.0.1:${agentBase + 1000 * (n - 1) + 2}`

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
  const { base: BASE, agentBase: AGENT_BASE } = await freeBases(2)
  const PROXY = `127.0.0.1:${BASE}`
  const agentApi = (n: number) => agentApiOf(AGENT_BASE, n)
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
  t.equal(st.code, 0, 'status exits 0 when every process is up')
  t.equal((st.stdout.match(/ up$/gm) ?? []).length, 3, `status shows 3 processes up:\n${st.stdout}`)

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
  t.equal(missing.code, 3, 'unknown tag exits 3 (not found)')
  t.equal(
    missing.stderr.trim(),
    'PullCLI: tag not found: 192.168.1.1-/data-nothing.txt:v1',
    'one clear line, no stack',
  )

  // A distribution job, as the hint says: agent-1's root to agent-2's, through the herd's jobs.
  t.match(started.stdout, /job: +shoal job run --src agent-1:\S+ --to agent-2:\S+ --apiserver /)
  const root = (n: number) => join(workdir, 'roots', `agent-${n}`)
  await mkdir(join(root(1), 'data'))
  const jobSrc = join(root(1), 'data', '交易数据.txt')
  await randomFile(jobSrc, 1 << 20)
  const job = await cli('shoal', [
    'job',
    'run',
    '--src',
    `agent-1:${jobSrc}`,
    '--to',
    `agent-2:${join(root(2), 'in')}`,
    '--apiserver',
    `127.0.0.1:${BASE + 6}`,
    '--timeout-seconds',
    '60',
    '--wait',
  ])
  t.equal(job.code, 0, `job run: ${job.stdout}${job.stderr}`)
  t.ok(
    (await digestFile(join(root(2), 'in', '交易数据.txt'))).digest.equals((await digestFile(jobSrc)).digest),
    "the job's copy on agent-2 verified",
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
  t.equal(gone.code, 3)
  t.match(gone.stderr, `tag not found: ${tag}`)
  t.ok((await stat(join(dir, 'out-1', '交易数据.txt'))).isFile(), 'files already pulled stay')

  const stopped = await cli('shoal', ['devcluster', 'down', '--workdir', workdir])
  t.equal(stopped.code, 0)
  t.match(stopped.stdout, 'stopped 3 processes')
  const after = await cli('shoal', ['devcluster', 'status', '--workdir', workdir])
  t.match(after.stdout, 'not running')
  t.equal(after.code, 1, 'status exits 1 when no devcluster runs')
})

t.test('devcluster status checks health; restart brings one process or all back', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-e2e-restart-'))
  const workdir = join(dir, 'cluster')
  const stopped: number[] = []
  t.teardown(async () => {
    // A process the test stopped (SIGSTOP) must run again to shut down in time.
    for (const pid of stopped) signal(pid, 'SIGCONT')
    await cli('shoal', ['devcluster', 'down', '--workdir', workdir])
    await rm(dir, { recursive: true, force: true })
  })
  const { base, agentBase } = await freeBases(2)
  const dc = (...args: string[]) => cli('shoal', ['devcluster', ...args, '--workdir', workdir])
  const pids = async (): Promise<Record<string, number>> => {
    const state = JSON.parse(await readFile(join(workdir, 'devcluster.json'), 'utf8')) as {
      processes: Array<{ name: string; pid: number }>
    }
    return Object.fromEntries(state.processes.map((p) => [p.name, p.pid]))
  }
  /** The status line of each process, by name. */
  const lines = (stdout: string) =>
    Object.fromEntries(
      stdout
        .trim()
        .split('\n')
        .map((l) => [l.split(/\s+/)[0], l]),
    )

  const started = await dc(
    'up',
    '--agents',
    '2',
    '--base-port',
    String(base),
    '--agent-base-port',
    String(agentBase),
  )
  t.equal(started.code, 0, `devcluster up: ${started.stderr}`)
  // The hints name the ports this cluster uses, not the defaults, and its work folder.
  t.match(started.stdout, `PushCLI push --src-path FILE --dst-host 127.0.0.1:${base}\n`)
  t.match(started.stdout, `PullCLI pull --tag TAG --dst-path DIR --dst-host ${agentApiOf(agentBase, 1)}`)
  t.match(started.stdout, `agent-2 ${agentApiOf(agentBase, 2)}`)
  t.match(started.stdout, `RemoveCLI remove --tag TAG --dst-host 127.0.0.1:${base}\n`)
  t.match(started.stdout, `shoal devcluster status --workdir ${workdir}`)
  t.notMatch(started.stdout, /15000|16002/, 'no default port in the hints')

  const allUp = await dc('status')
  t.equal(allUp.code, 0, `all up: ${allUp.stdout}`)
  const first = await pids()
  for (const name of ['herd', 'agent-1', 'agent-2'])
    t.match(
      lines(allUp.stdout)[name],
      new RegExp(`^${name} +pid ${first[name]} +http://127\\.0\\.0\\.1:\\d+  up$`),
    )

  // A killed agent: its pid is gone.
  signal(first['agent-2'] as number, 'SIGKILL')
  const killed = await dc('status')
  t.equal(killed.code, 1, 'status exits 1 when a process is down')
  t.match(lines(killed.stdout)['agent-2'], `down: pid ${first['agent-2']} not running`)
  t.match(lines(killed.stdout)['agent-1'], / up$/)
  t.match(lines(killed.stdout).herd, / up$/)

  // A wedged agent: its pid runs, but it does not answer /health.
  signal(first['agent-1'] as number, 'SIGSTOP')
  stopped.push(first['agent-1'] as number)
  const wedged = await dc('status')
  t.equal(wedged.code, 1)
  t.match(lines(wedged.stdout)['agent-1'], 'down: health check failed: no answer within 2 s')
  signal(first['agent-1'] as number, 'SIGCONT')
  stopped.pop()

  const one = await dc('restart', 'agent-2')
  t.equal(one.code, 0, `restart agent-2: ${one.stderr}`)
  t.match(one.stdout, /^restarted agent-2 +pid \d+/)
  const afterOne = await pids()
  t.not(afterOne['agent-2'], first['agent-2'], 'agent-2 runs as a new process')
  t.equal(afterOne['agent-1'], first['agent-1'], 'agent-1 was left alone')
  const backUp = await dc('status')
  t.equal(backUp.code, 0, `all up again: ${backUp.stdout}`)

  const unknown = await dc('restart', 'agent-9')
  t.equal(unknown.code, 2, 'an unknown name is a usage error')
  t.equal(
    unknown.stderr,
    'shoal: unknown process "agent-9"; the devcluster has herd, agent-1, agent-2\n',
    'one line naming the known processes',
  )

  const all = await dc('restart')
  t.equal(all.code, 0, `restart all: ${all.stderr}`)
  t.same(
    all.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/)[1]),
    ['herd', 'agent-1', 'agent-2'],
    'the herd first, then the agents',
  )
  const afterAll = await pids()
  for (const name of ['herd', 'agent-1', 'agent-2'])
    t.not(afterAll[name], afterOne[name], `${name} restarted`)
  const final = await dc('status')
  t.equal(final.code, 0, `all up after restarting all: ${final.stdout}`)

  // The restarted cluster still works: push through the herd, pull through the new agent-2.
  const src = join(dir, 'data', 'after-restart.bin')
  await mkdir(join(dir, 'data'))
  await randomFile(src, 256 << 10)
  const pushed = await cli('PushCLI', ['push', '--src-path', src, '--dst-host', `127.0.0.1:${base}`])
  t.equal(pushed.code, 0, `push: ${pushed.stderr}`)
  const tag = /^tag:\s+(.+)$/m.exec(pushed.stdout)?.[1] ?? ''
  const out = join(dir, 'out')
  const pulled = await cli('PullCLI', [
    'pull',
    '--tag',
    tag,
    '--dst-path',
    out,
    '--dst-host',
    agentApiOf(agentBase, 2),
  ])
  t.equal(pulled.code, 0, `pull: ${pulled.stderr}`)
  t.ok((await digestFile(join(out, 'after-restart.bin'))).digest.equals((await digestFile(src)).digest))
})

t.test('devcluster port flags: bad choices are one line and exit 2', async (t) => {
  const dir = await tempDir(t, 'shoal-e2e-ports-')
  const overlap = await cli('shoal', [
    'devcluster',
    'up',
    '--workdir',
    dir,
    '--base-port',
    '21000',
    '--agent-base-port',
    '21003',
  ])
  t.equal(overlap.code, 2)
  t.match(overlap.stderr, /^shoal: agent-1's ports 21003-21005 overlap the herd's 21000-21006/)
  const tooHigh = await cli('shoal', [
    'demo',
    '--workdir',
    dir,
    '--agents',
    '3',
    '--agent-base-port',
    '64000',
  ])
  t.equal(tooHigh.code, 2, 'demo takes the same port flags')
  t.match(tooHigh.stderr, 'needs ports up to 66002')
  const unknown = await cli('shoal', ['devcluster', 'restart', 'herd', '--workdir', join(dir, 'none')])
  t.equal(unknown.code, 3, 'NOT_FOUND exits 3')
  t.match(unknown.stderr, 'no devcluster was started from')
})

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {
    // already gone
  }
}

t.test('user mistakes are one line and a non-zero exit', async (t) => {
  const dir = await tempDir(t, 'shoal-e2e-')
  const noFile = await cli('PushCLI', [
    'push',
    '--src-path',
    join(dir, 'absent.txt'),
    '--dst-host',
    '127.0.0.1:1',
  ])
  t.equal(noFile.code, 7, 'INVALID_PATH exits 7 (local I/O)')
  t.equal(noFile.stderr.trim(), `PushCLI: cannot push ${join(dir, 'absent.txt')}: no such file`)

  const badTag = await cli('PullCLI', ['pull', '--tag', 'h-/a/../etc-passwd', '--dst-path', dir])
  t.equal(badTag.code, 2, 'INVALID_TAG exits 2 (usage)')
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
  t.equal(noAgent.code, 6, 'UNAVAILABLE exits 6')
  t.equal(
    noAgent.stderr,
    'PullCLI: cannot reach the agent at 127.0.0.1:1 (ECONNREFUSED: nothing listens there); is it running?\n',
  )

  const usage = await cli('PullCLI', ['pull', '--dst-path', dir])
  t.equal(usage.code, 2, 'a usage error exits 2')
  t.match(usage.stderr, 'a tag or a file name is required (--tag TAG or NAME)')

  const help = await cli('PushCLI', ['push', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, '--src-path <path>')

  const badConfig = await cli('shoal-agent', ['--config', join(dir, 'missing.yaml')])
  t.equal(badConfig.code, 1)
  t.match(badConfig.stderr, /^shoal-agent: config file not found/)
})
