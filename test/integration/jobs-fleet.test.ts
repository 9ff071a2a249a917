/**
 * A distribution job of 1 source and 50 targets against an in-process fleet (a herd with its
 * resource API and job controller, 51 agents with jobs on): every target gets the file, and the
 * swarm does the work: the origin sends about one copy of it (its torrent egress, read from its
 * /metrics), not fifty.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ResourceClient } from '../../lib/apiserver/client/index.js'
import {
  type Distribution,
  DistributionKind,
  type DistributionSpecT,
  type DistributionStatusT,
  DEFAULT_JOB_NAMESPACE as NS,
} from '../../lib/jobs/kinds.js'
import { startTestAgent } from '../helpers/agent.js'
import { startTestHerd } from '../helpers/herd.js'

const TARGETS = 50
const SIZE = 8 << 20
/** One machine: every peer is 127.0.0.1, so the limits per address are a cluster's (development.yaml). */
const LOOPBACK_PEERS = { maxConnectionsPerIp: 400, maxConnectionsPerIpPerTorrent: 50, maxPendingPerIp: 256 }

async function sentBytes(originUrl: string): Promise<number> {
  const text = await (await fetch(`${originUrl}/metrics`)).text()
  const m = /^shoal_torrent_bytes_sent_total(?:\{[^}]*\})? (\S+)$/m.exec(text)
  return m ? Number(m[1]) : Number.NaN
}

t.test(`1 source, ${TARGETS} targets: every file lands, the origin sends about one copy`, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-jobs-fleet-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // A capped origin sends each piece once (serve-once refusals): the rest is the swarm's. At
  // 16 MiB/s on 2 shared cores the first pullers got 2.3 copies before the swarm formed.
  const herd = await startTestHerd(t, dir, {
    origin: { bandwidth: { egressBytesPerSec: '4MiB' }, peer: LOOPBACK_PEERS },
  })
  const api = herd.urls.apiserver as string
  const hosts = ['10.1.0.1', ...Array.from({ length: TARGETS }, (_, i) => `10.1.1.${i + 1}`)]
  const rootOf = (host: string) => join(dir, 'hosts', host)
  await Promise.all(
    hosts.map((host) =>
      startTestAgent(t, {
        dataDir: join(dir, `agent-${host}`),
        herd,
        settings: {
          hostName: host,
          peer: { host: '127.0.0.1', port: 0, ...LOOPBACK_PEERS },
          jobs: { apiserver: api, roots: [rootOf(host)], proxy: herd.urls.proxy },
        },
      }),
    ),
  )
  const bytes = randomBytes(SIZE)
  const src = join(rootOf('10.1.0.1'), 'data', 'ref.bin')
  await mkdir(join(src, '..'), { recursive: true })
  await writeFile(src, bytes)
  const sentBefore = await sentBytes(herd.urls.origin)

  const dists = new ResourceClient<DistributionSpecT, DistributionStatusT>(api, DistributionKind)
  const started = Date.now()
  await dists.create(NS, {
    metadata: { name: 'fleet' },
    spec: {
      source: { host: '10.1.0.1', path: src },
      targets: hosts.slice(1).map((host) => ({ host, path: join(rootOf(host), 'data') })),
      options: { timeoutSeconds: 600 },
    } as DistributionSpecT,
  })
  const deadline = Date.now() + 240_000
  let d: Distribution
  for (;;) {
    d = (await dists.get(NS, 'fleet')) as Distribution
    const phase = d.status?.phase
    if (phase === 'Succeeded' || phase === 'Failed') break
    if (Date.now() > deadline) throw new Error(`the job did not finish: ${JSON.stringify(d.status?.counts)}`)
    await new Promise((r) => setTimeout(r, 200))
  }
  const seconds = (Date.now() - started) / 1000
  t.equal(d.status?.phase, 'Succeeded', JSON.stringify(d.status?.conditions))
  t.equal(d.status?.counts?.succeeded, TARGETS)
  const want = createHash('sha256').update(bytes).digest('hex')
  let same = 0
  for (const host of hosts.slice(1)) {
    const got = createHash('sha256')
      .update(await readFile(join(rootOf(host), 'data', 'ref.bin')))
      .digest('hex')
    if (got === want) same++
  }
  t.equal(same, TARGETS, 'every target has the file (sha256)')
  const copies = ((await sentBytes(herd.urls.origin)) - sentBefore) / SIZE
  t.comment(
    `${TARGETS} targets × ${SIZE >> 20} MiB in ${seconds.toFixed(1)} s; origin egress ${copies.toFixed(2)} copies`,
  )
  t.ok(copies >= 0.99, 'the origin sent the file at least once (the metric is the right one)')
  t.ok(copies < 1.5, `the swarm did the work: the origin sent ${copies.toFixed(2)} copies, not ${TARGETS}`)
})
