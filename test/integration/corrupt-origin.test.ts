/**
 * One corrupt copy on the origin, through real daemons and sockets: a herd (tracker, origin
 * with its engine, build-index, proxy) and agents in this process, push with PushCLI's code
 * path, pull with PullCLI's.
 *
 * - A byte flipped in the origin's cached blob: the agent bans the origin from that blob only,
 *   briefly, and reports the bad piece (through the tracker); the origin re-hashes, drops its
 *   copy and restores it from the backend; the agent dials it again and the pull succeeds. A
 *   healthy blob pulled through the same agent afterwards succeeds too.
 * - The backend's copy corrupt as well: the origin refuses the blob, and the pull fails well
 *   before the stall timeout, with BLOB_CORRUPT naming the origin and the piece.
 * - The tracker relays reports about its configured origins only.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { AgentServer } from '../../lib/agent/server/index.js'
import { FsBackend } from '../../lib/backend/fs.js'
import { pull } from '../../lib/cli/pull.js'
import { push } from '../../lib/cli/push.js'
import { validateConfig } from '../../lib/config/index.js'
import { type Digest, digestFile } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import type { Herd } from '../../lib/herd/index.js'
import { silentLogger } from '../../lib/log/index.js'
import type { Registry } from '../../lib/metrics/index.js'
import { blobKey } from '../../lib/origin/server/index.js'
import { TrackerClient } from '../../lib/tracker/client/index.js'
import { randomFile, tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'
import { writtenBack } from '../helpers/writeback.js'

const MiB = 1 << 20
/** The agent's default: the old behaviour was to stall this long, then fail. */
const STALL_SECONDS = 120

async function pushRandom(herd: Herd, dir: string, name: string, size: number) {
  await mkdir(join(dir, 'src'), { recursive: true })
  const src = join(dir, 'src', name)
  await randomFile(src, size)
  const pushed = await push({ srcPath: src, srcHost: 'corrupt', dstHost: herd.urls.proxy })
  return { tag: pushed.tag.toString(), digest: pushed.digest }
}

async function startAgent(t: Test, herd: Herd, dir: string, name: string): Promise<AgentServer> {
  const config = validateConfig(AgentConfigSchema, {
    server: { port: 0 },
    peer: { host: '127.0.0.1', port: 0 },
    dataDir: join(dir, name),
    trackers: [herd.urls.tracker],
    buildIndex: herd.urls.buildIndex,
    stallTimeoutSeconds: STALL_SECONDS,
  })
  const agent = new AgentServer(config, { logger: silentLogger() })
  await agent.start()
  t.teardown(() => agent.stop())
  return agent
}

/** Flips one byte in the middle of a file, as a failing disk would. */
async function flipByte(path: string): Promise<void> {
  const bytes = await readFile(path)
  bytes[bytes.length >> 1]! ^= 0x01
  await writeFile(path, bytes)
}

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}) {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name)
  let sum = 0
  for (const v of m?.values ?? [])
    if (Object.entries(labels).every(([k, l]) => v.labels[k] === l)) sum += Number(v.value)
  return sum
}

async function pullTo(agent: AgentServer, tag: string, out: string) {
  const started = Date.now()
  try {
    const pulled = await pull({ tag, dstPath: out, dstHost: agent.url, timeoutSeconds: STALL_SECONDS + 30 })
    return { pulled, seconds: (Date.now() - started) / 1000 }
  } catch (err) {
    return { err, seconds: (Date.now() - started) / 1000 }
  }
}

async function sameBytes(path: string, digest: Digest): Promise<boolean> {
  return (await digestFile(path)).digest.equals(digest)
}

t.test('a corrupt cached copy: the origin restores it from the backend and the pull succeeds', async (t) => {
  const dir = await tempDir(t, 'shoal-corrupt-')
  const herd = await startTestHerd(t, dir, { peerTtlSeconds: 30 })
  const origin = herd.originNode.origin
  const bad = await pushRandom(herd, dir, 'bad.bin', 8 * MiB)
  const good = await pushRandom(herd, dir, 'good.bin', 4 * MiB)
  await writtenBack(origin.registry) // the backend holds the good copy the origin restores
  await flipByte(origin.store.blobPath(bad.digest))

  const agent = await startAgent(t, herd, dir, 'agent')
  const first = await pullTo(agent, bad.tag, join(dir, 'out-bad'))
  t.notOk(first.err, `the pull succeeded (${first.err})`)
  t.ok(first.pulled && (await sameBytes(first.pulled.path, bad.digest)), 'with the pushed sha256')
  t.ok(first.seconds < STALL_SECONDS / 2, `well before the stall timeout (${first.seconds.toFixed(1)} s)`)
  t.equal(
    await metric(origin.registry, 'shoal_origin_corrupt_blobs_total', { source: 'cache' }),
    1,
    'origin counted it',
  )
  t.equal(await metric(origin.registry, 'shoal_origin_corrupt_blobs_total', { source: 'backend' }), 0)
  t.ok(
    (await digestFile(origin.store.blobPath(bad.digest))).digest.equals(bad.digest),
    'origin copy restored',
  )

  // The origin stays usable for every other blob on this agent.
  const second = await pullTo(agent, good.tag, join(dir, 'out-good'))
  t.notOk(second.err, `a healthy blob pulled afterwards succeeds (${second.err})`)
  t.ok(second.pulled && (await sameBytes(second.pulled.path, good.digest)), 'with the pushed sha256')
  t.ok(second.seconds < STALL_SECONDS / 2, `promptly (${second.seconds.toFixed(1)} s)`)
})

t.test('corrupt in the cache and in the backend: the pull fails fast with BLOB_CORRUPT', async (t) => {
  const dir = await tempDir(t, 'shoal-corrupt-')
  const herd = await startTestHerd(t, dir, { peerTtlSeconds: 30 })
  const origin = herd.originNode.origin
  const bad = await pushRandom(herd, dir, 'rotten.bin', 4 * MiB)
  const good = await pushRandom(herd, dir, 'fine.bin', 2 * MiB)
  await writtenBack(origin.registry) // then the test corrupts the backend's copy too
  await flipByte(origin.store.blobPath(bad.digest))
  const backendFile = await readFile(origin.store.blobPath(bad.digest))
  backendFile[0]! ^= 0xff
  await new FsBackend(join(dir, 'herd', 'backend')).put(blobKey('default', bad.digest), backendFile)

  const agent = await startAgent(t, herd, dir, 'agent')
  const first = await pullTo(agent, bad.tag, join(dir, 'out'))
  t.ok(isShoalError(first.err, 'BLOB_CORRUPT'), `fails with BLOB_CORRUPT (${first.err})`)
  t.match(
    (first.err as Error).message,
    /corrupt on origin 127\.0\.0\.1:\d+ \(piece \d+ failed SHA-1\).*backend's copy .* is corrupt.*refuses to serve it/,
    'the message names the origin, the piece and the backend',
  )
  t.ok(first.seconds < STALL_SECONDS / 2, `well before the stall timeout (${first.seconds.toFixed(1)} s)`)
  t.equal(await metric(origin.registry, 'shoal_origin_corrupt_blobs_total', { source: 'cache' }), 1)
  t.equal(await metric(origin.registry, 'shoal_origin_corrupt_blobs_total', { source: 'backend' }), 1)

  // Asking again gets the same answer at once (the metainfo is refused), not a stall.
  const again = await pullTo(agent, bad.tag, join(dir, 'out'))
  t.ok(isShoalError(again.err, 'BLOB_CORRUPT'), `a second pull fails the same way (${again.err})`)
  t.ok(again.seconds < STALL_SECONDS / 2, `promptly (${again.seconds.toFixed(1)} s)`)

  const other = await pullTo(agent, good.tag, join(dir, 'out-fine'))
  t.notOk(other.err, `a healthy blob on the same origin still pulls (${other.err})`)
  t.ok(other.pulled && (await sameBytes(other.pulled.path, good.digest)), 'with the pushed sha256')
})

t.test('the tracker relays reports about its origins only', async (t) => {
  const dir = await tempDir(t, 'shoal-corrupt-')
  const herd = await startTestHerd(t, dir)
  const blob = await pushRandom(herd, dir, 'x.bin', 1 * MiB)
  const tracker = new TrackerClient(herd.urls.tracker)
  const notOrigin = await tracker
    .reportCorrupt('default', blob.digest, { peer: '127.0.0.1:1', piece: 0 })
    .then(
      () => undefined,
      (err: unknown) => err,
    )
  t.ok(isShoalError(notOrigin, 'NOT_FOUND'), `a peer that is not an origin: NOT_FOUND (${notOrigin})`)
  const verdict = await tracker.reportCorrupt('default', blob.digest, {
    peer: `127.0.0.1:${herd.originPeerPort}`,
    piece: 0,
  })
  t.equal(verdict.state, 'ok', 'the origin re-verified its intact copy')
  t.equal(
    await metric(herd.originNode.origin.registry, 'shoal_origin_verifications_total', { result: 'ok' }),
    1,
  )
})
