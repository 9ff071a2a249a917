/**
 * A ring of three real origins (each with its BitTorrent engine) on loopback, sharing one
 * backend folder, behind a tracker, build-index, proxy and an agent. One origin is stopped:
 * pushes fail over at once, locations stop naming it after failThreshold health checks, pushes
 * and pulls of blobs it owns still work; restarted on the same ports it is named again after
 * passThreshold checks. Every wait polls against a deadline.
 */
import { createHash, randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { AgentServer } from '../../lib/agent/server/index.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { startBuildIndex } from '../../lib/build-index/server/index.js'
import { pull } from '../../lib/cli/pull.js'
import { push } from '../../lib/cli/push.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest, digestFile } from '../../lib/core/index.js'
import { HashRing } from '../../lib/hashring/index.js'
import { ReservedListener } from '../../lib/lifecycle/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { OriginClient } from '../../lib/origin/client/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { OriginNode } from '../../lib/origin/node.js'
import { ProxyConfigSchema } from '../../lib/proxy/config.js'
import { startProxy } from '../../lib/proxy/server/index.js'
import { TrackerConfigSchema } from '../../lib/tracker/config.js'
import { startTracker } from '../../lib/tracker/server/index.js'
import { tempDir } from '../helpers/files.js'

const logger = silentLogger()
const HEALTH = { intervalMs: 300, timeoutMs: 1000, failThreshold: 3, passThreshold: 2 }
const HOST = '127.0.0.1'

/** Polls `check` until it returns true; fails the test with `what` after `ms`. */
async function until(what: string, check: () => Promise<boolean>, ms = 20_000): Promise<number> {
  const start = Date.now()
  for (;;) {
    if (await check().catch(() => false)) return Date.now() - start
    if (Date.now() - start > ms) throw new Error(`timed out waiting until ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** A file in `dir` whose digest's primary owner (replicas 1) is `owner`. */
async function fileOwnedBy(dir: string, name: string, ring: HashRing, owner: string) {
  for (;;) {
    const bytes = randomBytes(1 << 20)
    const digest = Digest.fromHex(createHash('sha256').update(bytes).digest('hex'))
    if (ring.owners(digest, 1)[0] !== owner) continue
    const path = join(dir, name)
    await writeFile(path, bytes)
    return { path, digest }
  }
}

async function startRing(t: Test) {
  const dir = await tempDir(t)
  const reserve = async (what: string) => {
    const l = new ReservedListener(what, HOST, 0)
    await l.start()
    return l
  }
  const http = [await reserve('origin 0'), await reserve('origin 1'), await reserve('origin 2')]
  const peer = [await reserve('peer 0'), await reserve('peer 1'), await reserve('peer 2')]
  // Kept: a listener's port cannot be read once it is closed (the restart binds the same ports).
  const httpPorts = http.map((l) => l.port)
  const peerPorts = peer.map((l) => l.port)
  const nodes = httpPorts.map((p) => `${HOST}:${p}`)
  const peers = peerPorts.map((p) => `${HOST}:${p}`)
  const listen = { host: HOST, port: 0 }

  const tracker = await startTracker(
    validateConfig(TrackerConfigSchema, {
      server: listen,
      announceInterval: 2,
      minInterval: 1,
      peerTtlSeconds: 10,
      origins: nodes.map((h, i) => ({ http: h, peer: peers[i] })),
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

  const originConfig = (i: number) =>
    validateConfig(OriginConfigSchema, {
      server: { host: HOST, port: httpPorts[i] },
      peer: { host: HOST, port: peerPorts[i] },
      dataDir: join(dir, `origin-${i}`),
      backend: { type: 'fs', root: join(dir, 'backend') },
      trackerUrl: tracker.url,
      buildIndex: buildIndex.url.replace(/^http:\/\//, ''),
      self: nodes[i],
      hashring: { nodes, replicas: 1, healthCheck: HEALTH },
    })
  const origins: OriginNode[] = []
  for (let i = 0; i < 3; i++) {
    const node = new OriginNode(originConfig(i), {
      logger,
      listeners: { http: http[i]?.server, peer: peer[i]?.server },
    })
    await node.start()
    origins.push(node)
  }
  t.teardown(async () => {
    for (const o of origins) await o.stop()
  })

  const proxy = await startProxy(
    validateConfig(ProxyConfigSchema, {
      server: listen,
      origins: nodes,
      originHealth: HEALTH,
      buildIndex: buildIndex.url,
      uploadChunkSize: 1 << 20,
    }),
    { logger },
  )
  t.teardown(() => proxy.stop())
  const agent = new AgentServer(
    validateConfig(AgentConfigSchema, {
      server: { port: 0 },
      peer: { host: HOST, port: 0 },
      dataDir: join(dir, 'agent'),
      trackers: [tracker.url],
      buildIndex: buildIndex.url,
      stallTimeoutSeconds: 30,
    }),
    { logger },
  )
  await agent.start()
  t.teardown(() => agent.stop())

  /** Restarts origin `i` on its ports (its listeners were closed with it). */
  const restart = async (i: number) => {
    const node = new OriginNode(originConfig(i), { logger })
    await node.start()
    origins[i] = node
  }
  return { dir, nodes, origins, proxy, agent, restart, ring: new HashRing(nodes) }
}

t.test(
  'an origin stops: it is passed over, pushes and pulls go on; restarted, it is named again',
  async (t) => {
    const { dir, nodes, origins, proxy, agent, restart, ring } = await startRing(t)
    const first = nodes[0] as string
    const victim = nodes[1] as string
    const ask = new OriginClient(first)
    const namesVictim = async (d: Digest) => (await ask.locations(d)).includes(victim)

    const early = await fileOwnedBy(dir, 'early.bin', ring, victim)
    const late = await fileOwnedBy(dir, 'late.bin', ring, victim)
    t.same(await ask.locations(late.digest), [victim], 'all healthy: the ring owner')

    await origins[1]?.stop()
    const stoppedAt = Date.now()
    t.ok(await namesVictim(early.digest), 'right after the stop it is still named (no check has failed yet)')
    // The proxy is told the dead owner and fails over to a live origin at once.
    const pushedEarly = await push({ srcPath: early.path, srcHost: 'h1', dstHost: proxy.url, version: 'v1' })
    t.ok(pushedEarly.uploaded, 'a push while the dead owner is still named fails over')

    await until('locations stop naming the stopped origin', async () => !(await namesVictim(late.digest)))
    // Rounds are intervalMs apart: failThreshold failures take at least (failThreshold - 1) of them
    // (less a probe that was in flight when the origin stopped).
    const dropped = Date.now() - stoppedAt
    t.ok(
      dropped >= (HEALTH.failThreshold - 1) * HEALTH.intervalMs - 100,
      `dropped ${dropped} ms after the stop, once its checks had failed`,
    )
    const owners = await ask.locations(late.digest)
    t.same(
      owners,
      ring
        .owners(late.digest, 3)
        .filter((n) => n !== victim)
        .slice(0, 1),
      'the next owner along the ring',
    )
    const metrics = await (await fetch(`http://${first}/metrics`)).text()
    t.match(metrics, new RegExp(`shoal_origin_member_healthy\\{member="${victim}"[^}]*\\} 0`))
    t.match(metrics, new RegExp(`shoal_origin_member_transitions_total\\{member="${victim}",to="unhealthy"`))

    const pushed = await push({ srcPath: late.path, srcHost: 'h1', dstHost: proxy.url, version: 'v1' })
    t.ok(pushed.uploaded)
    for (const p of [pushed, pushedEarly]) {
      const r = await pull({
        tag: p.tag.toString(),
        dstPath: join(dir, `out-${p.digest.hex.slice(0, 8)}`),
        dstHost: agent.url,
        timeoutSeconds: 60,
      })
      t.ok((await digestFile(r.path)).digest.equals(p.digest), `pulled ${p.tag} through the agent`)
    }

    await restart(1)
    const back = await until('locations name the restarted origin again', () => namesVictim(late.digest))
    t.ok(
      back >= (HEALTH.passThreshold - 1) * HEALTH.intervalMs - 100,
      `named again ${back} ms after the restart, once it passed its checks`,
    )
    t.same(await ask.locations(late.digest), [victim])
    // It fetches a blob it owns from the shared backend when asked.
    await until('the restarted owner serves its blob', async () => {
      const s = await new OriginClient(victim).stat('default', pushed.digest)
      return s !== undefined && !s.pending
    })
    t.pass('the restarted owner serves the blob pushed while it was down (from the shared backend)')
  },
)
