/**
 * The design's §6.3 example end to end with real processes (the built `shoal herd` and four
 * `shoal agent`s): 192.168.1.1:/usr/local/data/xxx交易数据.txt to the same path on .10, .11 and
 * .12. Each agent goes by one of those host names and owns a root folder in the test's temp
 * folder standing in for its host's "/". The job is a YAML plan run by `shoal job run --wait`;
 * the herd's controller makes the tasks, the agents push and pull; the Distribution's status is
 * then read from the resource API. Then .12 is stopped: its target fails at the job's deadline while the others succeed;
 * .12 comes back and a `shoal job rerun --failed --wait` completes the job.
 */
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { stringify } from 'yaml'
import { ResourceClient } from '../../lib/apiserver/client/index.js'
import { defaultConfigDir } from '../../lib/config/index.js'
import { builtBinary, HERD_PORTS } from '../../lib/devcluster/layout.js'
import { freePort } from '../../lib/herd/index.js'
import {
  type Distribution,
  DistributionKind,
  type DistributionSpecT,
  type DistributionStatusT,
  DEFAULT_JOB_NAMESPACE as NS,
} from '../../lib/jobs/kinds.js'
import { type DaemonProc, startDaemonProc } from '../helpers/daemon-procs.js'

const exec = promisify(execFile)
const HOSTS = ['192.168.1.1', '192.168.1.10', '192.168.1.11', '192.168.1.12'] as const
const FILE = 'xxx交易数据.txt'
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer()
    s.once('error', () => res(false))
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)))
  })
}

/** A herd base port whose 7 ports are free now, below the ephemeral range, tried at random. */
async function freeBase(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 20000 + 10 * Math.floor(Math.random() * 1000)
    const ports = Array.from({ length: HERD_PORTS }, (_, i) => base + i)
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base
  }
  throw new Error('no free base port for the herd')
}

async function shoal(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [builtBinary('shoal'), ...args], { timeout: 120_000 })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

async function until<T>(what: string, get: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  for (;;) {
    const v = await get().catch((err) => {
      last = err
      return undefined
    })
    if (v !== undefined) return v
    if (Date.now() > deadline)
      throw new Error(`not within ${ms} ms: ${what}${last ? ` (${String(last)})` : ''}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

t.test(
  '§6.3: one file from .1 to .10, .11, .12; a host down fails alone; rerun --failed completes it',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-e2e-jobs-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const base = await freeBase()
    const herd = await startDaemonProc(
      t,
      dir,
      'herd',
      ['herd', '--data-dir', join(dir, 'herd'), '--base-port', String(base)],
      `http://127.0.0.1:${base}`,
    )
    t.ok(herd.alive)
    const rootOf = (host: string) => join(dir, 'hosts', host)
    const agentApi = new Map<string, number>()
    for (const host of HOSTS) {
      const file = join(dir, `agent-${host}.yaml`)
      agentApi.set(host, await freePort())
      await mkdir(rootOf(host), { recursive: true })
      await writeFile(
        file,
        stringify({
          extends: join(defaultConfigDir(), 'agent', 'development.yaml'),
          hostName: host,
          server: { host: '127.0.0.1', port: agentApi.get(host) },
          peer: { host: '127.0.0.1', port: await freePort() },
          dataDir: join(dir, `agent-${host}`),
          minFreeBytes: 0,
          trackers: [`127.0.0.1:${base + 3}`],
          buildIndex: `127.0.0.1:${base + 4}`,
          jobs: {
            apiserver: `127.0.0.1:${base + 6}`,
            roots: [rootOf(host)],
            proxy: `127.0.0.1:${base}`,
            progressSeconds: 1,
          },
        }),
      )
    }
    const startAgent = (host: string): Promise<DaemonProc> =>
      startDaemonProc(
        t,
        dir,
        `agent-${host}`,
        ['agent', '--config', join(dir, `agent-${host}.yaml`)],
        `http://127.0.0.1:${agentApi.get(host)}`,
      )
    const agents = new Map<string, DaemonProc>()
    for (const host of HOSTS) agents.set(host, await startAgent(host))

    const src = join(rootOf('192.168.1.1'), 'usr/local/data', FILE)
    await mkdir(join(src, '..'), { recursive: true })
    const dists = new ResourceClient<DistributionSpecT, DistributionStatusT>(
      `http://127.0.0.1:${base + 6}`,
      DistributionKind,
    )
    const targets = HOSTS.slice(1).map((host) => ({ host, path: join(rootOf(host), 'usr/local/data') }))
    const fileOn = (host: string) => join(rootOf(host), 'usr/local/data', FILE)
    const settled = (name: string, ms: number) =>
      until(
        `job ${name} finished`,
        async () => {
          const d = (await dists.get(NS, name)) as Distribution
          const st = d.status
          const terminal = st?.phase === 'Succeeded' || st?.phase === 'Failed'
          return terminal && st?.observedRun === d.spec.run && st.observedGeneration === d.metadata.generation
            ? d
            : undefined
        },
        ms,
      )

    const api = `127.0.0.1:${base + 6}`
    /** The plan of the design's example, as an operator writes it (YAML). */
    const plan = async (name: string, timeoutSeconds: number) => {
      const file = join(dir, `${name}.yaml`)
      await writeFile(
        file,
        stringify({ name, source: { host: '192.168.1.1', path: src }, targets, options: { timeoutSeconds } }),
      )
      return file
    }
    const job = (args: string[]) => shoal(['job', ...args, '--apiserver', api])

    // 1. Every host up: every target gets the file.
    const v1 = randomBytes(2 << 20)
    await writeFile(src, v1)
    const run1 = await job(['run', await plan('daily-1', 120), '--wait'])
    t.equal(run1.code, 0, `shoal job run --wait exits 0: ${run1.stderr}`)
    for (const host of HOSTS.slice(1)) t.match(run1.stdout, host, `the table names ${host}`)
    const d1 = await settled('daily-1', 10_000)
    t.equal(d1.status?.phase, 'Succeeded', `job 1 succeeded: ${JSON.stringify(d1.status?.conditions)}`)
    t.match(d1.status?.push, { host: '192.168.1.1', phase: 'Succeeded' })
    for (const host of HOSTS.slice(1)) {
      t.equal(sha(await readFile(fileOn(host))), sha(v1), `${host} has the file`)
      t.match(
        d1.status?.targets.find((l) => l.host === host),
        { phase: 'Succeeded', bytes: v1.length, source: 'swarm', written: fileOn(host) },
        `${host}'s line`,
      )
    }

    // 2. .12 is down: its target fails at the deadline, the others succeed meanwhile.
    await agents.get('192.168.1.12')?.stop()
    const v2 = randomBytes(2 << 20)
    await writeFile(src, v2)
    const run2 = await job(['run', await plan('daily-2', 15), '--wait'])
    t.not(run2.code, 0, 'shoal job run --wait exits non-zero: a target failed')
    t.match(run2.stdout + run2.stderr, '192.168.1.12', 'and names the host')
    const d2 = await settled('daily-2', 10_000)
    t.equal(d2.status?.phase, 'Failed', 'job 2 failed')
    for (const host of ['192.168.1.10', '192.168.1.11'])
      t.equal(sha(await readFile(fileOn(host))), sha(v2), `${host} has the new file`)
    const line12 = d2.status?.targets.find((l) => l.host === '192.168.1.12')
    t.match(line12, { phase: 'Failed', lastError: /deadline|timeout/i }, '.12 failed for its deadline')
    t.equal(sha(await readFile(fileOn('192.168.1.12'))), sha(v1), '.12 still has the old file, untouched')
    t.equal(
      d2.status?.targets.filter((l) => l.phase === 'Succeeded').length,
      2,
      'the down host did not block the others',
    )

    // 3. .12 is back: the failed target alone is run again.
    agents.set('192.168.1.12', await startAgent('192.168.1.12'))
    const before = Object.fromEntries((d2.status?.targets ?? []).map((l) => [l.host, l.attempts] as const))
    const rerun = await job(['rerun', 'daily-2', '--failed', '--wait'])
    t.equal(rerun.code, 0, `shoal job rerun --failed --wait exits 0: ${rerun.stderr}`)
    const d3 = await settled('daily-2', 10_000)
    t.equal(
      d3.status?.phase,
      'Succeeded',
      `rerun completed the job: ${JSON.stringify(d3.status?.conditions)}`,
    )
    t.equal(sha(await readFile(fileOn('192.168.1.12'))), sha(v2), '.12 has the new file')
    for (const host of ['192.168.1.10', '192.168.1.11'])
      t.equal(
        d3.status?.targets.find((l) => l.host === host)?.attempts,
        before[host],
        `${host} was not run again`,
      )
    t.notOk(
      existsSync(join(rootOf('192.168.1.1'), 'usr/local/data', `.${FILE}`)),
      'no stray files on the source',
    )
  },
)
