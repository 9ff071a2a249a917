/**
 * The agent cache's lifecycle, on a real herd and real agents (real sockets, real files), pulls
 * through the agent's API with PullCLI's code:
 *
 * - a blob unused past the TTL is removed and no longer seeded; one used recently stays; a pull
 *   after the removal fetches it again;
 * - above the high watermark the least recently used blobs go until the low watermark;
 * - a blob a client is reading is neither swept nor deleted (409 BLOB_IN_USE) until the read
 *   ends; a download in progress is left alone by a sweep;
 * - DELETE /blobs/:digest twice: 204 both times;
 * - last use survives a restart (the cache files' mtimes).
 *
 * Time: the sweeps run on a ManualClock (advanced by the test) and last use is read from a wall
 * clock the test moves forward (`later`), so a TTL of an hour passes at once.
 */
import { createHash } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { AgentClient } from '../../lib/agent/client/index.js'
import type { AgentServer } from '../../lib/agent/server/index.js'
import { ManualClock } from '../../lib/bandwidth/clock.js'
import { pull } from '../../lib/cli/pull.js'
import { push } from '../../lib/cli/push.js'
import { type Digest, digestFile, MetaInfo } from '../../lib/core/index.js'
import type { Herd } from '../../lib/herd/index.js'
import { startTestAgent } from '../helpers/agent.js'
import { randomFile, tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'

const MiB = 1 << 20
const TTL_S = 3600
const SWEEP_MS = 60_000

interface Pushed {
  tag: string
  digest: Digest
}

async function pushBlob(herd: Herd, dir: string, name: string, size = MiB): Promise<Pushed> {
  await mkdir(join(dir, 'src'), { recursive: true })
  const src = join(dir, 'src', name)
  await randomFile(src, size)
  const pushed = await push({ srcPath: src, srcHost: 'ttl', dstHost: herd.urls.proxy })
  return { tag: pushed.tag.toString(), digest: pushed.digest }
}

/** A wall clock the test moves forward, and the ManualClock the sweeps run on. */
class TestTime {
  offsetMs = 0
  readonly clock = new ManualClock()
  readonly now = () => Date.now() + this.offsetMs
  later(seconds: number): void {
    this.offsetMs += seconds * 1000
  }
}

function startAgent(
  t: Test,
  herd: Herd,
  dataDir: string,
  time: TestTime,
  settings: Record<string, unknown> = {},
): Promise<AgentServer> {
  return startTestAgent(t, {
    herd,
    dataDir,
    settings: { cache: { ttlSeconds: TTL_S, sweepIntervalSeconds: SWEEP_MS / 1000 }, ...settings },
    deps: { clock: time.clock, now: time.now },
  })
}

/** Lets the periodic sweep fire (the ManualClock) and waits for it; resolves with what it removed. */
function sweep(agent: AgentServer, time: TestTime): Promise<number> {
  time.clock.advance(SWEEP_MS)
  return agent.cache.sweep() // joins the sweep the timer started
}

let pulls = 0
/**
 * A pull that reads the blob from the agent: into a new folder each time, since a pull onto a
 * file that already holds the bytes is served locally and never reaches the agent's cache.
 */
async function pullTo(agent: AgentServer, dir: string, p: Pushed): Promise<void> {
  const dstPath = join(dir, `out-${++pulls}`)
  const pulled = await pull({ tag: p.tag, dstPath, dstHost: agent.url, timeoutSeconds: 60 })
  if (!(await digestFile(pulled.path)).digest.equals(p.digest)) throw new Error('pulled bytes differ')
}

async function cached(agent: AgentServer, p: Pushed): Promise<boolean> {
  return (await agent.store.stat(p.digest)) !== undefined
}

async function infoHashOf(agent: AgentServer, p: Pushed) {
  const raw = await agent.store.readMetaInfo(p.digest)
  if (!raw) throw new Error(`no metainfo for ${p.digest}`)
  return MetaInfo.parse(raw).infoHash
}

t.test(
  'past the TTL a blob is removed and no longer seeded; a recent one stays; a pull fetches it again',
  async (t) => {
    const dir = await tempDir(t)
    const herd = await startTestHerd(t, dir)
    const [a, b] = [await pushBlob(herd, dir, 'a.bin'), await pushBlob(herd, dir, 'b.bin')]
    const time = new TestTime()
    const agent = await startAgent(t, herd, join(dir, 'agent'), time)
    await pullTo(agent, dir, a)
    await pullTo(agent, dir, b)
    const aHash = await infoHashOf(agent, a)
    t.ok(agent.engine.stats(aHash), 'a is seeded once pulled')

    t.equal(await sweep(agent, time), 0, 'nothing is old yet')
    time.later(TTL_S / 2)
    await pullTo(agent, dir, b) // b used again: half a TTL younger than a
    time.later(TTL_S / 2 + 1)
    t.equal(await sweep(agent, time), 1, 'one blob is past the TTL')
    t.notOk(await cached(agent, a), 'a (unused for a TTL) is gone from the cache')
    t.equal(agent.engine.stats(aHash), undefined, 'and the engine no longer seeds it')
    t.ok(await cached(agent, b), 'b (used half a TTL ago) stays')
    t.ok(agent.engine.stats(await infoHashOf(agent, b)), 'and is still seeded')
    const metrics = (await new AgentClient(agent.url).http.buffer('GET', '/metrics')).toString()
    t.match(metrics, /shoal_agent_cache_evicted_total\{reason="idle",component="agent"\} 1\n/)

    await pullTo(agent, dir, a)
    t.ok(await cached(agent, a), 'a pull after the removal fetches the blob again')
    t.ok(agent.engine.stats(aHash), 'and seeds it again')
  },
)

t.test('above the high watermark the least recently used go until the low watermark', async (t) => {
  const dir = await tempDir(t)
  const herd = await startTestHerd(t, dir)
  const blobs: Pushed[] = []
  for (const name of ['a', 'b', 'c', 'd']) blobs.push(await pushBlob(herd, dir, `${name}.bin`))
  const [a, b, c, d] = blobs as [Pushed, Pushed, Pushed, Pushed]
  const time = new TestTime()
  // Bytes of cached blobs (> 1): four 1 MiB blobs are over 3.5 MiB; 2.5 MiB leaves two.
  const agent = await startAgent(t, herd, join(dir, 'agent'), time, {
    cache: { ttlSeconds: 0, highWatermark: 3.5 * MiB, lowWatermark: 2.5 * MiB, sweepIntervalSeconds: 60 },
  })
  for (const p of [a, b, c]) {
    await pullTo(agent, dir, p)
    time.later(10)
  }
  t.equal(await sweep(agent, time), 0, 'three blobs are under the high watermark')
  await pullTo(agent, dir, d)
  time.later(10)
  await pullTo(agent, dir, a) // a is now the most recently used
  t.equal(await sweep(agent, time), 2, 'two blobs go: 4 MiB down to at most 2.5 MiB')
  t.same(
    await Promise.all(blobs.map((p) => cached(agent, p))),
    [true, false, false, true],
    'the least recently used (b, c) went; a (read again) and d stay',
  )
  t.equal(await sweep(agent, time), 0, 'under the high watermark nothing more goes')
})

t.test(
  'a blob being read is neither swept nor deleted until the read ends; DELETE is idempotent',
  async (t) => {
    const dir = await tempDir(t)
    const herd = await startTestHerd(t, dir)
    // Larger than the socket buffers of loopback: the read stays open while the test holds it.
    const big = await pushBlob(herd, dir, 'big.bin', 32 * MiB)
    const time = new TestTime()
    const agent = await startAgent(t, herd, join(dir, 'agent'), time)
    await pullTo(agent, dir, big)
    const client = new AgentClient(agent.url)

    const { body } = await client.blob('default', big.digest)
    const hash = createHash('sha256')
    const first = await new Promise<Buffer>((resolve) => body.once('data', resolve))
    body.pause()
    hash.update(first)
    time.later(2 * TTL_S)
    t.equal(await sweep(agent, time), 0, 'a blob past the TTL with a reader is kept')
    t.ok(await cached(agent, big))
    await t.rejects(client.remove(big.digest), { code: 'BLOB_IN_USE', status: 409 }, 'DELETE is refused')
    t.ok(await cached(agent, big), 'the refused DELETE removed nothing')

    // The reader finishes: it got every byte.
    for await (const chunk of body) hash.update(chunk as Buffer)
    t.equal(`sha256:${hash.digest('hex')}`, big.digest.toString(), 'the reader got the whole blob')
    // The agent lets go of the reader just after the client saw the end (its release is a use:
    // time moves on a TTL at every try).
    const deadline = Date.now() + 10_000
    let removed = 0
    while (removed === 0 && Date.now() < deadline) {
      time.later(2 * TTL_S)
      removed = await sweep(agent, time)
      if (removed === 0) await sleep(20)
    }
    t.equal(removed, 1, 'once the read ended, the sweep removes it')
    t.notOk(await cached(agent, big))

    // DELETE twice: 204 both times (the second has nothing to remove).
    await pullTo(agent, dir, big)
    t.equal(await client.http.status('DELETE', `/blobs/${big.digest}`), 204, 'first DELETE')
    t.notOk(await cached(agent, big), 'the blob is gone')
    t.equal(await client.http.status('DELETE', `/blobs/${big.digest}`), 204, 'second DELETE: 204 as well')
    await pullTo(agent, dir, big)
    t.ok(await cached(agent, big), 'a pull after the DELETE fetches it again')
  },
)

t.test('a download in progress is left alone by a sweep', async (t) => {
  const dir = await tempDir(t)
  const herd = await startTestHerd(t, dir, { peerTtlSeconds: 30 })
  const blob = await pushBlob(herd, dir, 'slow.bin', 8 * MiB)
  const time = new TestTime()
  // 8 MiB at 4 MiB/s: two seconds of download to sweep in.
  const agent = await startAgent(t, herd, join(dir, 'agent'), time, {
    bandwidth: { ingressBytesPerSec: 4 * MiB },
    cache: { ttlSeconds: 1, highWatermark: 1, lowWatermark: 1, sweepIntervalSeconds: 60 },
  })
  const pulling = pullTo(agent, dir, blob)
  pulling.catch(() => undefined)
  const deadline = Date.now() + 30_000
  for (;;) {
    const p = await agent.progressOf(blob.digest).catch(() => undefined)
    if (p?.state === 'downloading' && p.piecesDone >= 1) break
    if (Date.now() > deadline) throw new Error('the download never got under way')
    await sleep(10)
  }
  time.later(3600)
  t.equal(await sweep(agent, time), 0, 'the sweep removes nothing during the download')
  t.match(await agent.progressOf(blob.digest), { state: 'downloading' })
  await pulling
  t.ok(await cached(agent, blob), 'the download completed into the cache and verified')
})

t.test('last use survives a restart (neither all fresh nor all stale)', async (t) => {
  const dir = await tempDir(t)
  const herd = await startTestHerd(t, dir)
  const [a, b] = [await pushBlob(herd, dir, 'a.bin'), await pushBlob(herd, dir, 'b.bin')]
  const time = new TestTime()
  const dataDir = join(dir, 'agent')
  let agent = await startAgent(t, herd, dataDir, time)
  await pullTo(agent, dir, a)
  await pullTo(agent, dir, b)
  time.later(TTL_S / 2)
  await pullTo(agent, dir, b) // b read half a TTL later
  const bUsed = agent.cache.lastUsed(b.digest)
  await agent.stop()

  agent = await startAgent(t, herd, dataDir, time)
  t.equal(agent.cache.size, 2, 'both blobs are indexed after the restart')
  t.ok(
    Math.abs((agent.cache.lastUsed(b.digest) ?? 0) - (bUsed ?? 0)) < 2000,
    "b's last use is the one before the restart",
  )
  time.later(TTL_S / 2 + 1)
  t.equal(await sweep(agent, time), 1)
  t.notOk(await cached(agent, a), 'a, unused for a TTL across the restart, is gone')
  t.ok(await cached(agent, b), 'b, used half a TTL ago before the restart, stays')
})
