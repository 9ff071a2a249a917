/**
 * Downloads in flight while the tracker's Redis restarts: a herd whose tracker keeps peers in a
 * real redis-server, two agents pulling a blob at a capped rate. Redis is stopped while both
 * are downloading (their announces then fail with a failure reason, seen in the tracker's
 * metrics), started again empty, and both pulls still finish with the right bytes, using the
 * peers they already had; the swarm is rebuilt in Redis by the next announces.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { push } from '../../lib/cli/push.js'
import { validateConfig } from '../../lib/config/index.js'
import { digestFile } from '../../lib/core/index.js'
import { HerdConfigSchema } from '../../lib/herd/config.js'
import { startHerd } from '../../lib/herd/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { startTestAgent } from '../helpers/agent.js'
import { randomFile, tempDir } from '../helpers/files.js'
import { startTestRedis } from '../helpers/redis.js'

const MiB = 1024 * 1024

async function until(what: string, deadlineMs: number, ok: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + deadlineMs
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${deadlineMs} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Sum of a metric's samples whose labels match `labels` (a regex over the label text). */
async function metric(url: string, name: string, labels = /.*/): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) {
    const m = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line)
    if (m && m[1] === name && labels.test(m[2] ?? '')) sum += Number(m[3])
  }
  return sum
}

t.test('pulls in flight finish across a Redis restart; the swarm comes back', async (t) => {
  const dir = await tempDir(t)
  const redis = await startTestRedis(t)
  const herd = await startHerd(
    validateConfig(HerdConfigSchema, {
      dataDir: join(dir, 'herd'),
      bindHost: '127.0.0.1',
      basePort: 0,
      log: { level: 'silent' },
      tracker: {
        announceInterval: 2,
        minInterval: 1,
        peerTtlSeconds: 10,
        peerStore: { type: 'redis', redis: { url: redis.url, commandTimeoutMs: 500 } },
      },
    }),
    { logger: silentLogger() },
  )
  t.teardown(() => herd.stop())
  const src = join(dir, 'blob.bin')
  await randomFile(src, 12 * MiB)
  const { digest } = await push({ srcPath: src, srcHost: 'h1', dstHost: herd.urls.proxy })
  const agents = await Promise.all(
    ['a1', 'a2'].map((name) =>
      startTestAgent(t, {
        herd,
        dataDir: join(dir, name),
        settings: { stallTimeoutSeconds: 60, bandwidth: { ingressBytesPerSec: 2 * MiB } },
      }),
    ),
  )
  let finished = 0
  const pulls = agents.map(async (agent) => {
    const res = await fetch(`${agent.url}/namespace/default/blobs/${digest}`)
    if (res.status !== 200) throw new Error(`pull answered ${res.status}: ${await res.text()}`)
    const out = join(dir, `out-${agent.url.replace(/\W/g, '')}`)
    await writeFile(out, Buffer.from(await res.arrayBuffer()))
    const pulled = (await digestFile(out)).digest
    finished++
    return pulled
  })
  // Failures surface at Promise.all below; until then a rejection must not go unhandled.
  for (const p of pulls) p.catch(() => {})
  const tracker = herd.urls.tracker
  await until('both agents in the swarm', 20_000, async () => {
    return (await metric(tracker, 'shoal_tracker_peers', /leecher/)) >= 2
  })

  t.equal(finished, 0, 'both pulls are in flight when Redis stops')
  await redis.stop()
  const errorsBefore = await metric(tracker, 'shoal_tracker_announces_total', /result="error"/)
  await until('an announce while Redis is down', 20_000, async () => {
    return (await metric(tracker, 'shoal_tracker_announces_total', /result="error"/)) > errorsBefore
  })
  await redis.restart()

  const got = await Promise.all(pulls)
  for (const d of got) t.ok(d.equals(digest), 'the pulled bytes have the pushed digest')
  await until('the swarm rebuilt in the restarted Redis', 10_000, async () => {
    return (await metric(tracker, 'shoal_tracker_peers', /seeder|origin/)) >= 3
  })
  t.pass('origin and both agents are in the swarm again')
})
