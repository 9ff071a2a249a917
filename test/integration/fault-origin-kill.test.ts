/**
 * Fault 1 of the origin ring (issue 9): three origins, each a separate process (`shoal origin`,
 * the built CLI) sharing one backend folder, in one ring with replicas 3; ten agents pull a
 * 64 MiB blob at once, and the origin that took the push, seeding it, is SIGKILLed mid-pull.
 * Every agent finishes and its copy's sha256 matches.
 *
 * How the blob survives: it is written back to the backend before the pulls (write-back runs at
 * commit), and the tracker, asked for its metainfo once, asks the other owners too, which fetch
 * it from the backend and seed it (lib/tracker/server/metainfo.ts warm). The tracker's health
 * checks take the dead origin out of its handouts; the agents carry on with the two others and
 * with each other. Origins seed under an egress cap so the pull lasts long enough to be cut.
 * The tracker, build-index, proxy and the agents run in this process on real sockets.
 */
import { join } from 'node:path'
import t from 'tap'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { AgentServer } from '../../lib/agent/server/index.js'
import { FsBackend } from '../../lib/backend/index.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { startBuildIndex } from '../../lib/build-index/server/index.js'
import { pull } from '../../lib/cli/pull.js'
import { push } from '../../lib/cli/push.js'
import { validateConfig } from '../../lib/config/index.js'
import { digestFile } from '../../lib/core/index.js'
import { HashRing } from '../../lib/hashring/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { OriginClient } from '../../lib/origin/client/index.js'
import { blobKey } from '../../lib/origin/server/keys.js'
import { ProxyConfigSchema } from '../../lib/proxy/config.js'
import { startProxy } from '../../lib/proxy/server/index.js'
import { TrackerConfigSchema } from '../../lib/tracker/config.js'
import { startTracker } from '../../lib/tracker/server/index.js'
import { randomFile, tempDir } from '../helpers/files.js'
import { originAddresses, startOriginProc, until } from '../helpers/origin-procs.js'

const logger = silentLogger()
const HEALTH = { intervalMs: 300, timeoutMs: 1000, failThreshold: 3, passThreshold: 2 }
const MiB = 1 << 20
const SIZE = 64 * MiB
const AGENTS = 10
const listen = { host: '127.0.0.1', port: 0 }

t.test('one of three origins SIGKILLed while 10 agents pull 64 MiB: all finish and verify', async (t) => {
  const dir = await tempDir(t, 'shoal-fault1-')
  const addrs = await originAddresses(3)
  const nodes = addrs.map((a) => a.http)

  const tracker = await startTracker(
    validateConfig(TrackerConfigSchema, {
      server: listen,
      announceInterval: 2,
      minInterval: 1,
      peerTtlSeconds: 10,
      origins: addrs,
      originHealth: HEALTH,
    }),
    { logger },
  )
  t.teardown(() => tracker.stop())
  const buildIndex = await startBuildIndex(
    validateConfig(BuildIndexConfigSchema, {
      server: listen,
      origins: nodes,
      originHealth: HEALTH,
      backend: { type: 'fs', root: join(dir, 'tags') },
    }),
    { logger },
  )
  t.teardown(() => buildIndex.stop())

  const backendRoot = join(dir, 'backend')
  const origins = await Promise.all(
    addrs.map((addr, i) =>
      startOriginProc(t, dir, `origin-${i}`, addr, {
        dataDir: join(dir, `origin-${i}`),
        backend: { type: 'fs', root: backendRoot },
        trackerUrl: tracker.url,
        buildIndex: buildIndex.url.replace(/^http:\/\//, ''),
        hashring: { nodes, replicas: 3, healthCheck: HEALTH },
        // Every agent is 127.0.0.1: the per-address limits would refuse legitimate ones.
        peer: { maxConnectionsPerIp: 400, maxConnectionsPerIpPerTorrent: 50, maxPendingPerIp: 256 },
        // About 6 s of seeding at full speed from one origin: a pull long enough to be cut.
        bandwidth: { egressBytesPerSec: '12MiB' },
      }),
    ),
  )
  const proxy = await startProxy(
    validateConfig(ProxyConfigSchema, {
      server: listen,
      origins: nodes,
      originHealth: HEALTH,
      buildIndex: buildIndex.url,
      uploadChunkSize: 8 * MiB,
    }),
    { logger },
  )
  t.teardown(() => proxy.stop())

  const src = join(dir, 'reference.bin')
  await randomFile(src, SIZE)
  const pushed = await push({ srcPath: src, srcHost: 'h1', dstHost: proxy.url, version: 'v1' })
  t.ok(pushed.uploaded, 'pushed')
  // The owner the proxy uploads to first: it holds the blob from the commit and seeds it.
  const primary = new HashRing(nodes).owners(pushed.digest, 3)[0] as string
  const victim = origins.find((o) => o.http === primary)
  if (!victim) throw new Error(`no origin process at ${primary}`)
  const backend = new FsBackend(backendRoot)
  await until(
    'the blob is written back to the backend',
    async () => (await backend.stat(blobKey('default', pushed.digest)))?.size === SIZE,
  )

  const agents: AgentServer[] = []
  for (let i = 0; i < AGENTS; i++) {
    const agent = new AgentServer(
      validateConfig(AgentConfigSchema, {
        server: { port: 0 },
        peer: { host: '127.0.0.1', port: 0 },
        dataDir: join(dir, `agent-${i}`),
        trackers: [tracker.url],
        buildIndex: buildIndex.url,
        stallTimeoutSeconds: 60,
      }),
      { logger },
    )
    await agent.start()
    t.teardown(() => agent.stop())
    agents.push(agent)
  }

  const pulls = agents.map((a, i) =>
    pull({ tag: pushed.tag.toString(), dstPath: join(dir, `out-${i}`), dstHost: a.url, timeoutSeconds: 150 }),
  )
  // Observe the pulls without holding their failures back from the assertion below.
  const settled = Promise.allSettled(pulls)

  // Mid-pull: every agent knows the torrent and together they hold a tenth of its pieces.
  const pieces = async () => {
    let done = 0
    let total = 0
    let finished = 0
    let known = 0
    for (const a of agents) {
      const p = await a.progressOf(pushed.digest).catch(() => undefined)
      if (!p || p.pieceCount === 0) continue
      known++
      done += p.piecesDone
      total += p.pieceCount
      if (p.state !== 'downloading') finished++
    }
    return { done, total, finished, known }
  }
  await until(
    'the agents hold a tenth of the pieces',
    async () => {
      const p = await pieces()
      return p.known === AGENTS && p.done >= p.total / 10
    },
    60_000,
  )
  const sentByVictim = await egressBytes(victim.http)
  victim.child.kill('SIGKILL')
  await victim.exited
  const atKill = await pieces()
  t.ok(sentByVictim > 0, `the killed origin had sent ${sentByVictim} bytes`)
  t.ok(
    atKill.finished < AGENTS,
    `killed mid-pull: ${atKill.done}/${atKill.total} pieces, ${atKill.finished} agents done`,
  )

  const results = await settled
  for (const [i, r] of results.entries()) {
    if (r.status === 'rejected') {
      t.fail(`agent ${i}: ${(r.reason as Error).message}`)
      continue
    }
    t.ok((await digestFile(r.value.path)).digest.equals(pushed.digest), `agent ${i}'s copy verifies`)
  }
  const survivors = origins.filter((o) => o !== victim)
  for (const o of survivors) t.ok(o.alive, `${o.name} still runs`)
  const fromSurvivors = (await Promise.all(survivors.map((o) => egressBytes(o.http)))).reduce(
    (a, b) => a + b,
    0,
  )
  t.ok(fromSurvivors > 0, `the surviving owners seeded ${fromSurvivors} bytes (fetched from the backend)`)
  // The ring tells the truth afterwards: the killed origin is no longer named.
  await until('locations stop naming the killed origin', async () => {
    const named = await new OriginClient(survivors[0]?.http as string).locations(pushed.digest)
    return !named.includes(victim.http) && named.length === 2
  })
})

/** An origin's BitTorrent egress so far (shoal_bandwidth_bytes_total{direction="egress"}). */
async function egressBytes(hostPort: string): Promise<number> {
  const text = await (await fetch(`http://${hostPort}/metrics`)).text()
  const m = /^shoal_bandwidth_bytes_total\{direction="egress"[^}]*\} (\S+)$/m.exec(text)
  return m ? Number(m[1]) : 0
}
