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
import t from 'tap'
import { HttpClient } from '../../lib/http/index.js'
import { tempDir } from '../helpers/files.js'

const exec = promisify(execFile)
const HERD = 27000
const AGENT_PEER = 28001
const AGENT_API = 28002

function start(script: string, env: Record<string, string>, log: string[]): ChildProcess {
  const child = spawn('bash', [resolve('devcluster', script)], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout?.on('data', (d: Buffer) => log.push(d.toString()))
  child.stderr?.on('data', (d: Buffer) => log.push(d.toString()))
  return child
}

async function ready(url: string, child: ChildProcess, log: string[]): Promise<void> {
  const client = new HttpClient(url, { name: 'test', timeoutMs: 1000 })
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`exited early: ${log.join('')}`)
    if ((await client.status('GET', '/readiness', { accept: [503] }).catch(() => 0)) === 200) return
    await sleep(100)
  }
  throw new Error(`not ready: ${log.join('')}`)
}

t.test('herd and agent start scripts run a working cluster and stop on SIGTERM', async (t) => {
  const dir = await tempDir(t, 'shoal-images-')
  const herdLog: string[] = []
  const agentLog: string[] = []
  const herd = start(
    'herd_start_processes.sh',
    { SHOAL_BASE_PORT: String(HERD), SHOAL_DATA_DIR: join(dir, 'herd') },
    herdLog,
  )
  t.teardown(() => herd.kill('SIGKILL'))
  await ready(`127.0.0.1:${HERD}`, herd, herdLog)
  const agent = start(
    'agent_start.sh',
    {
      SHOAL_HERD_BASE_PORT: String(HERD),
      AGENT_PEER_PORT: String(AGENT_PEER),
      AGENT_SERVER_PORT: String(AGENT_API),
      SHOAL_DATA_DIR: join(dir, 'agent'),
    },
    agentLog,
  )
  t.teardown(() => agent.kill('SIGKILL'))
  await ready(`127.0.0.1:${AGENT_API}`, agent, agentLog)

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
})
