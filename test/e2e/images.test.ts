/**
 * The container entry points, run as plain processes (no container engine runs here):
 * herd_start_processes.sh and agent_start.sh start a working herd and agent from environment
 * variables, and stop cleanly on SIGTERM as `docker stop` would send it.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { HttpClient } from '../../lib/http/index.js'
import { tempDir } from '../helpers/files.js'
import { freePortBlock } from '../helpers/ports.js'

const exec = promisify(execFile)

function start(script: string, env: Record<string, string>, log: string[]): ChildProcess {
  const child = spawn('bash', [resolve('devcluster', script)], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout?.on('data', (d: Buffer) => log.push(d.toString()))
  child.stderr?.on('data', (d: Buffer) => log.push(d.toString()))
  return child
}

/** 'ready', or 'port-taken' when the process exited because a port was taken meanwhile. */
async function ready(url: string, child: ChildProcess, log: string[]): Promise<'ready' | 'port-taken'> {
  const client = new HttpClient(url, { name: 'test', timeoutMs: 1000 })
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) {
      if (/EADDRINUSE|address already in use/i.test(log.join(''))) return 'port-taken'
      throw new Error(`exited early: ${log.join('')}`)
    }
    if ((await client.status('GET', '/readiness', { accept: [503] }).catch(() => 0)) === 200) return 'ready'
    await sleep(100)
  }
  throw new Error(`not ready: ${log.join('')}`)
}

/**
 * Starts an entry script on a fresh block of free ports (`ports(base)` gives its environment and
 * the URL to await), again on a new block if another process took one of them first.
 */
async function startOnFreePorts(
  t: Test,
  script: string,
  count: number,
  ports: (base: number) => { env: Record<string, string>; url: string },
): Promise<{ child: ChildProcess; base: number; log: string[] }> {
  for (let attempt = 1; ; attempt++) {
    const base = await freePortBlock(count)
    const { env, url } = ports(base)
    const log: string[] = []
    const child = start(script, env, log)
    t.teardown(() => child.kill('SIGKILL'))
    if ((await ready(url, child, log)) === 'ready') return { child, base, log }
    if (attempt === 5) throw new Error(`${script}: ports taken five times: ${log.join('')}`)
  }
}

/** Runs the images' HEALTHCHECK command (devcluster/healthcheck.mjs) as Docker would. */
async function healthcheck(env: Record<string, string>, ...args: string[]): Promise<number> {
  return exec(process.execPath, [resolve('devcluster/healthcheck.mjs'), ...args], {
    env: { ...process.env, ...env },
  }).then(
    () => 0,
    (err: { code?: number }) => err.code ?? -1,
  )
}

t.test('herd and agent start scripts run a working cluster and stop on SIGTERM', async (t) => {
  const dir = await tempDir(t, 'shoal-images-')
  const herdRun = await startOnFreePorts(t, 'herd_start_processes.sh', 7, (base) => ({
    env: { SHOAL_BASE_PORT: String(base), SHOAL_DATA_DIR: join(dir, 'herd') },
    url: `127.0.0.1:${base}`,
  }))
  const { child: herd, base: HERD, log: herdLog } = herdRun
  const agentRun = await startOnFreePorts(t, 'agent_start.sh', 2, (base) => ({
    env: {
      SHOAL_HERD_BASE_PORT: String(HERD),
      AGENT_PEER_PORT: String(base),
      AGENT_SERVER_PORT: String(base + 1),
      SHOAL_DATA_DIR: join(dir, 'agent'),
    },
    url: `127.0.0.1:${base + 1}`,
  }))
  const { child: agent } = agentRun
  const AGENT_API = agentRun.base + 1

  t.equal(await healthcheck({ SHOAL_BASE_PORT: String(HERD) }), 0, 'the herd image HEALTHCHECK passes')
  t.equal(
    await healthcheck({ AGENT_SERVER_PORT: String(AGENT_API) }, 'agent'),
    0,
    'the agent image HEALTHCHECK passes',
  )

  const src = join(dir, 'prices.csv')
  await writeFile(src, 'symbol,price\nABC,1.23\n')
  const node = process.execPath
  const pushed = await exec(node, [
    resolve('dist/cmd/PushCLI.js'),
    'push',
    '--src-path',
    src,
    '--src-host',
    'h',
    '--dst-host',
    `127.0.0.1:${HERD}`,
  ])
  const tag = /^tag:\s+(.+)$/m.exec(pushed.stdout)?.[1] ?? ''
  await exec(node, [
    resolve('dist/cmd/PullCLI.js'),
    'pull',
    '--tag',
    tag,
    '--dst-path',
    join(dir, 'in'),
    '--dst-host',
    `127.0.0.1:${AGENT_API}`,
  ])
  t.equal(
    await readFile(join(dir, 'in', 'prices.csv'), 'utf8'),
    'symbol,price\nABC,1.23\n',
    'pulled through the image entry points',
  )

  for (const [name, child] of [
    ['agent', agent],
    ['herd', herd],
  ] as const) {
    child.kill('SIGTERM')
    const [code] = await once(child, 'exit')
    t.equal(code, 0, `${name} exits 0 on SIGTERM`)
  }
  t.match(herdLog.join(''), /"msg":"herd stopped"/, 'the herd logs its shutdown')
  t.equal(
    await healthcheck({ SHOAL_BASE_PORT: String(HERD) }),
    1,
    'the HEALTHCHECK fails once the herd is gone',
  )
})
