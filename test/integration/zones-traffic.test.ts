/**
 * Bytes crossing zones, measured: real agents in two zones (a, b) and a herd (origin, tracker,
 * build-index), each agent counting the bytes it receives by the zone its sender declared in
 * the BEP 10 handshake (GET /downloads/:digest, bytesByZone / bytesCrossZone). The count does
 * not depend on the tracker: it is what the wire carried.
 *
 * The tracker hands out 2 peers (maxNumWant), so its ordering decides who talks to whom. One
 * blob is distributed in three steps: a1 alone (from the origin), then b1 alone (from the origin
 * and a1, the only seeder: its zone's first copy crosses), then a2, a3, b2, b3 together. With
 * locality on, each of those is handed the origin and its own zone's seeder, ahead of the other
 * zone's: nothing crosses in the last step, whatever the timing, which is the assertion. The
 * same run with locality off (agents that do not tell the tracker their zone, so it hands out
 * either seeder at random) is printed as the comparison.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { DownloadProgress } from '../../lib/agent/client/index.js'
import type { AgentServer } from '../../lib/agent/server/index.js'
import { push } from '../../lib/cli/push.js'
import { validateConfig } from '../../lib/config/index.js'
import { type Digest, digestFile } from '../../lib/core/index.js'
import { HerdConfigSchema } from '../../lib/herd/config.js'
import { type Herd, startHerd } from '../../lib/herd/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { TrackerClient } from '../../lib/tracker/client/index.js'
import { startTestAgent } from '../helpers/agent.js'
import { randomFile, tempDir } from '../helpers/files.js'

const MiB = 1024 * 1024
const SIZE = 4 * MiB

interface Host {
  name: string
  zone: 'a' | 'b'
  agent: AgentServer
}

/** Pulls the blob through the agent's API and checks the bytes; then its download status. */
async function pull(dir: string, host: Host, digest: Digest): Promise<DownloadProgress> {
  const res = await fetch(`${host.agent.url}/namespace/default/blobs/${digest}`)
  if (res.status !== 200) throw new Error(`${host.name}: pull answered ${res.status}: ${await res.text()}`)
  const out = join(dir, `out-${host.name}`)
  await writeFile(out, Buffer.from(await res.arrayBuffer()))
  if (!(await digestFile(out)).digest.equals(digest)) throw new Error(`${host.name}: wrong bytes`)
  const status = await fetch(`${host.agent.url}/downloads/${encodeURIComponent(digest.toString())}`)
  return (await status.json()) as DownloadProgress
}

interface Run {
  /** bytesCrossZone per host. */
  cross: Record<string, number>
  byZone: Record<string, Record<string, number>>
  received: Record<string, number>
  /** The agent's shoal_torrent_bytes_received_by_locality_total{locality="other"}. */
  metric: Record<string, number>
}

async function crossMetric(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const m = /^shoal_torrent_bytes_received_by_locality_total\{[^}]*locality="other"[^}]*\} (\S+)$/m.exec(text)
  return Number(m?.[1] ?? Number.NaN)
}

/**
 * One distribution of a fresh blob to six fresh agents in the three steps above. `locality`:
 * whether the agents tell the tracker their zone (they always tell their peers).
 */
async function distribute(t: Test, herd: Herd, dir: string, locality: boolean): Promise<Run> {
  const src = join(dir, `blob-${locality}.bin`)
  await randomFile(src, SIZE)
  const { digest } = await push({ srcPath: src, srcHost: 'h1', dstHost: herd.urls.proxy })
  const hosts: Host[] = []
  for (const [name, zone] of [
    ['a1', 'a'],
    ['b1', 'b'],
    ['a2', 'a'],
    ['a3', 'a'],
    ['b2', 'b'],
    ['b3', 'b'],
  ] as const) {
    const agent = await startTestAgent(t, {
      herd,
      dataDir: join(dir, `${locality ? 'on' : 'off'}-${name}`),
      settings: { zone },
      // Without locality the tracker hears no zone (a client built without one); the engine
      // still declares the agent's zone to its peers, so the bytes are counted the same way.
      ...(locality ? {} : { deps: { trackers: [new TrackerClient(herd.urls.tracker)] } }),
    })
    hosts.push({ name, zone, agent })
  }
  const [a1, b1, ...rest] = hosts as [Host, Host, ...Host[]]
  const statuses = new Map<string, DownloadProgress>()
  statuses.set('a1', await pull(dir, a1, digest))
  statuses.set('b1', await pull(dir, b1, digest))
  const last = await Promise.all(rest.map((h) => pull(dir, h, digest)))
  for (const [i, h] of rest.entries()) statuses.set(h.name, last[i] as DownloadProgress)
  const run: Run = { cross: {}, byZone: {}, received: {}, metric: {} }
  for (const h of hosts) {
    run.metric[h.name] = await crossMetric(h.agent.url)
    const s = statuses.get(h.name) as DownloadProgress
    run.cross[h.name] = s.bytesCrossZone ?? Number.NaN
    run.byZone[h.name] = s.bytesByZone ?? {}
    run.received[h.name] = Object.values(s.bytesByZone ?? {}).reduce((a, b) => a + b, 0)
  }
  return run
}

t.test('bytes crossing zones: bounded with locality, compared with none', async (t) => {
  const dir = await tempDir(t)
  const herd = await startHerd(
    validateConfig(HerdConfigSchema, {
      dataDir: join(dir, 'herd'),
      bindHost: '127.0.0.1',
      basePort: 0,
      log: { level: 'silent' },
      tracker: { maxNumWant: 2, defaultNumWant: 2 },
    }),
    { logger: silentLogger() },
  )
  t.teardown(() => herd.stop())

  const on = await distribute(t, herd, dir, true)
  const off = await distribute(t, herd, dir, false)
  const total = (r: Run) => Object.values(r.cross).reduce((a, b) => a + b, 0)
  const show = (r: Run) =>
    Object.entries(r.cross)
      .map(([h, n]) => `${h} ${(n / MiB).toFixed(2)}`)
      .join(', ')
  t.comment(
    `bytes crossing zones, ${SIZE / MiB} MiB blob to 6 agents in 2 zones, MiB per agent:\n` +
      `  locality on:  total ${(total(on) / MiB).toFixed(2)} (${show(on)})\n` +
      `  locality off: total ${(total(off) / MiB).toFixed(2)} (${show(off)})`,
  )

  for (const run of [on, off]) {
    for (const [h, byZone] of Object.entries(run.byZone)) {
      const own = h.startsWith('a') ? 'a' : 'b'
      const other = own === 'a' ? 'b' : 'a'
      t.equal(run.cross[h], byZone[other] ?? 0, `${h}: bytesCrossZone is what came from zone ${other}`)
      t.equal(run.metric[h], run.cross[h], `${h}: the metric of bytes from another zone says the same`)
      t.ok((run.received[h] ?? 0) >= SIZE, `${h}: received at least the blob (${run.received[h]} bytes)`)
    }
  }
  t.equal(on.cross.a1, 0, 'a1 (alone with the origin) crossed nothing')
  for (const h of ['a2', 'a3', 'b2', 'b3'])
    t.equal(
      on.cross[h],
      0,
      `${h}: with locality, handed the origin and its own zone's seeder: nothing crossed`,
    )
  t.ok(total(on) <= (on.received.b1 ?? 0), "with locality, only b1's first copy crossed zones")
})
