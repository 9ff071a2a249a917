/**
 * `shoal devcluster up --origins 3 --s3`, as a user runs it: the built binaries, an S3 server
 * (s3rver), the herd and two more origins as separate processes in one ring with replicas 3,
 * two agents. A pushed blob lands in the S3 bucket byte-identical, every origin is named as its
 * owner, both agents pull it; status, restart of one origin, and down cover every process.
 */
import { execFile } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { promisify } from 'node:util'
import t from 'tap'
import { S3Backend } from '../../lib/backend/index.js'
import { digestFile } from '../../lib/core/index.js'
import { clusterLayout, originPorts, S3_BUCKET } from '../../lib/devcluster/layout.js'
import { blobKey } from '../../lib/origin/server/keys.js'
import { randomFile } from '../helpers/files.js'
import { until } from '../helpers/origin-procs.js'
import { S3RVER_CREDENTIALS, s3Config } from '../helpers/s3rver.js'

const exec = promisify(execFile)
const bin = (name: string) => resolve('dist', 'cmd', `${name}.js`)

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer()
    s.once('error', () => res(false))
    s.listen(port, () => s.close(() => res(true)))
  })
}

/** Base ports whose every port (S3, herd, origins 2 and 3, two agents) is free right now, below the ephemeral range. */
async function freeBases(): Promise<{ base: number; agentBase: number }> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 22000 + 10 * Math.floor(Math.random() * 400)
    const agentBase = base + 30
    const layout = clusterLayout('/x', 2, base, agentBase, { origins: 3, s3: true })
    const ports = [layout.s3, layout.herd, ...layout.origins, ...layout.agents].flatMap((p) =>
      Object.values(p?.ports ?? {}),
    )
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return { base, agentBase }
  }
  throw new Error('no free ports for a devcluster')
}

async function cli(name: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [bin(name), ...args], { timeout: 120_000 })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

t.test('devcluster up --origins 3 --s3: a ring over S3; push, pull, restart an origin, down', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-e2e-ring-'))
  const workdir = join(dir, 'cluster')
  t.teardown(async () => {
    await cli('shoal', ['devcluster', 'down', '--workdir', workdir])
    await rm(dir, { recursive: true, force: true })
  })
  const { base, agentBase } = await freeBases()
  const wd = ['--workdir', workdir]
  const up = await cli('shoal', [
    'devcluster',
    'up',
    '--origins',
    '3',
    '--s3',
    '--agents',
    '2',
    ...wd,
    '--base-port',
    String(base),
    '--agent-base-port',
    String(agentBase),
  ])
  t.equal(up.code, 0, `up: ${up.stderr}`)
  t.match(up.stdout, `s3:      http://127.0.0.1:${base - 1000}, bucket ${S3_BUCKET}`)
  const nodes = [1, 2, 3].map((n) => `127.0.0.1:${originPorts(n, base).http}`)
  t.match(up.stdout, `ring:    origins ${nodes.join(', ')}`)
  t.same(
    (await readdir(join(workdir, 'logs'))).sort(),
    ['agent-1.log', 'agent-2.log', 'herd.log', 'origin-2.log', 'origin-3.log', 's3.log'],
    'one log per process',
  )
  const st = await cli('shoal', ['devcluster', 'status', ...wd])
  t.equal(st.code, 0, `status:\n${st.stdout}`)
  t.equal((st.stdout.match(/ up$/gm) ?? []).length, 6, 'six processes up')

  const src = join(dir, 'ref.bin')
  await randomFile(src, 9 << 20)
  const pushed = await cli('PushCLI', ['push', '--src-path', src, '--dst-host', `127.0.0.1:${base}`])
  t.equal(pushed.code, 0, `push: ${pushed.stderr}`)
  const tag = /^tag:\s+(.+)$/m.exec(pushed.stdout)?.[1] ?? ''
  const { digest } = await digestFile(src)

  const located = (await (await fetch(`http://${nodes[1]}/blobs/${digest}/locations`)).json()) as {
    locations: string[]
  }
  t.same([...located.locations].sort(), [...nodes].sort(), 'replicas 3: every origin owns it')

  const s3 = new S3Backend(
    s3Config(`http://127.0.0.1:${base - 1000}`, S3_BUCKET, { credentials: S3RVER_CREDENTIALS }),
  )
  t.teardown(() => s3.close())
  const key = blobKey('default', digest)
  await until('the blob is written back to S3', async () => (await s3.stat(key))?.size === 9 << 20)
  const s3Copy = join(dir, 's3-copy.bin')
  await pipeline(await s3.get(key), createWriteStream(s3Copy))
  t.ok((await digestFile(s3Copy)).digest.equals(digest), 'S3 holds the pushed bytes')

  for (const n of [1, 2]) {
    const out = join(dir, `out-${n}`)
    const api = `127.0.0.1:${agentBase + 1000 * (n - 1) + 2}`
    const pulled = await cli('PullCLI', ['pull', '--tag', tag, '--dst-path', out, '--dst-host', api])
    t.equal(pulled.code, 0, `pull on agent ${n}: ${pulled.stderr}`)
    t.ok((await digestFile(join(out, 'ref.bin'))).digest.equals(digest), `agent ${n} copy verified`)
  }

  const restarted = await cli('shoal', ['devcluster', 'restart', 'origin-2', ...wd])
  t.equal(restarted.code, 0, `restart origin-2: ${restarted.stderr}`)
  t.match(restarted.stdout, 'restarted origin-2')

  const down = await cli('shoal', ['devcluster', 'down', ...wd])
  t.equal(down.code, 0)
  t.match(down.stdout, 'stopped 6 processes')
})

t.test('devcluster --origins: bad choices are one line and exit 2', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-e2e-ring-bad-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const replicas = await cli('shoal', [
    'devcluster',
    'up',
    '--origins',
    '2',
    '--replicas',
    '3',
    '--workdir',
    dir,
  ])
  t.equal(replicas.code, 2)
  t.match(replicas.stderr, /^shoal: --replicas must be between 1 and the number of origins \(2\), not 3/)
  const overlap = await cli('shoal', [
    'devcluster',
    'up',
    '--origins',
    '3',
    '--base-port',
    '21000',
    '--agent-base-port',
    '21010',
    '--workdir',
    dir,
  ])
  t.equal(overlap.code, 2)
  t.match(overlap.stderr, /^shoal: agent-1's ports 21010-21012 overlap origin-2's 21011-21012/)
})
