/**
 * Issue 10: "an immutable version (anything but latest) that the local agent has already
 * resolved and cached pulls even while the build-index is unreachable". Real herd (tracker,
 * origin), a build-index and proxy the test can stop (startPushFront), a real agent on real
 * sockets and files:
 *
 * - v1 and latest pulled through the agent; build-index stopped: v1 still resolves (source
 *   'cache') and its blob streams and verifies; latest and an unknown version fail UNAVAILABLE;
 * - a version build-index said was removed is forgotten, so it fails UNAVAILABLE offline too;
 * - the agent restarted on the same data folder with build-index still down: v1 resolves;
 * - a build-index that accepts connections and never answers: after resolveTimeoutSeconds, v1
 *   from the cache, latest TIMEOUT;
 * - the agent warns once per tag it answers from the cache.
 */
import { randomBytes } from 'node:crypto'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { AgentClient } from '../../lib/agent/client/index.js'
import type { AgentServer } from '../../lib/agent/server/index.js'
import { DEFAULT_NAMESPACE, Digest, Tag } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import { createLogger, type Logger } from '../../lib/log/index.js'
import { ProxyClient } from '../../lib/proxy/client/index.js'
import { startTestAgent } from '../helpers/agent.js'
import { tempDir } from '../helpers/files.js'
import { startPushFront, startTestHerd } from '../helpers/herd.js'

const ns = DEFAULT_NAMESPACE

/** A logger whose JSON lines the test reads. */
function capturingLogger(): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
  const raw: string[] = []
  const logger = createLogger({ level: 'warn', destination: { write: (s: string) => raw.push(s) } })
  return { logger, lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>) }
}

function startAgent(
  t: Test,
  dataDir: string,
  trackers: string[],
  buildIndex: string,
  logger: Logger,
  settings: Record<string, unknown> = {},
): Promise<AgentServer> {
  return startTestAgent(t, { dataDir, trackers, buildIndex, settings, deps: { logger } })
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of body) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

/** Streams the blob through the agent and checks its sha256. */
async function pulls(agent: AgentClient, digest: Digest): Promise<boolean> {
  const { body } = await agent.blob(ns, digest, { timeoutMs: 60_000 })
  return Digest.fromBuffer(await readAll(body)).equals(digest)
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<string> {
  try {
    await p
  } catch (err) {
    if (isShoalError(err) && err.code === code) return err.message
    throw err
  }
  throw new Error(`expected ${code}, got an answer`)
}

t.test('immutable versions resolve from the agent while build-index is down; latest does not', async (t) => {
  const dir = await tempDir(t)
  const herd = await startTestHerd(t, dir)
  const front = await startPushFront(t, [herd.urls.origin])
  const proxy = new ProxyClient(front.proxy.url)
  const data = randomBytes(3 << 20)
  const digest = Digest.fromBuffer(data)
  await proxy.pushBlob(ns, digest, Readable.from([data]), data.length)
  const v1 = Tag.parse('offline-/data/daily-ref.bin:v1')
  const v2 = Tag.parse('offline-/data/daily-ref.bin:v2')
  const latest = Tag.parse('offline-/data/daily-ref.bin')
  await proxy.putTag(v1, digest, { meta: { type: 'file', desc: 'daily reference data' } })
  await proxy.putTag(v2, digest)
  await proxy.putTag(latest, digest)

  const log = capturingLogger()
  const agentDir = join(dir, 'agent')
  const buildIndexUrl = front.buildIndex.url // the address stays the agent's after build-index stops
  const agent = await startAgent(t, agentDir, [herd.urls.tracker], buildIndexUrl, log.logger)
  const client = new AgentClient(agent.url)
  const online = await client.resolveInfo(v1)
  t.equal(online.source, 'build-index')
  t.ok(online.digest.equals(digest))
  t.equal(online.desc, 'daily reference data')
  t.ok(await pulls(client, digest), 'v1 pulls through the swarm')
  t.equal((await client.resolveInfo(latest)).source, 'build-index')
  t.equal((await client.resolveInfo(v2)).source, 'build-index')
  t.equal(agent.tagCache.size, 2, 'v1 and v2 remembered, latest not')

  // v2 removed: the agent hears TAG_NOT_FOUND and forgets it.
  await proxy.deleteTag(v2)
  await rejectsWith(client.resolveInfo(v2), 'TAG_NOT_FOUND')
  t.equal(agent.tagCache.size, 1, 'a removed version is forgotten')

  await front.buildIndex.stop()
  const offline = await client.resolveInfo(v1)
  t.equal(offline.source, 'cache', 'v1 answered from the tag cache')
  t.ok(offline.digest.equals(digest))
  t.equal(offline.type, 'file')
  t.equal(offline.desc, 'daily reference data', 'with its meta')
  t.ok(await pulls(client, digest), 'and its blob still streams and verifies')
  t.ok((await client.resolve(v1)).equals(digest), 'resolve() too')
  t.match(
    await rejectsWith(client.resolveInfo(latest), 'UNAVAILABLE'),
    /build-index/,
    'latest is never cached',
  )
  await rejectsWith(client.resolveInfo(Tag.parse('offline-/data/daily-ref.bin:v9')), 'UNAVAILABLE')
  await rejectsWith(client.resolveInfo(v2), 'UNAVAILABLE')
  const warned = log
    .lines()
    .filter((l) => /answering an immutable tag from the tag cache/.test(String(l.msg)))
  t.equal(warned.length, 1, 'one warning for v1, however often it is answered offline')
  t.equal(warned[0]?.tag, v1.toString())

  // Restart on the same data folder, build-index still down: the entry was persisted.
  await agent.stop()
  const again = await startAgent(t, agentDir, [herd.urls.tracker], buildIndexUrl, log.logger)
  const client2 = new AgentClient(again.url)
  const afterRestart = await client2.resolveInfo(v1)
  t.equal(afterRestart.source, 'cache', 'v1 still resolves after a restart')
  t.ok(afterRestart.digest.equals(digest))
  t.ok(await pulls(client2, digest), 'from the agent cache')
  await again.stop()

  // A build-index that takes connections and never answers: the resolve timeout applies.
  const held = new Set<Socket>()
  const silent = createServer((s) => {
    held.add(s)
    s.on('close', () => held.delete(s))
  })
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
  t.teardown(async () => {
    for (const s of held) s.destroy()
    await new Promise((r) => silent.close(r))
  })
  const port = (silent.address() as { port: number }).port
  const hung = await startAgent(t, agentDir, [herd.urls.tracker], `127.0.0.1:${port}`, log.logger, {
    resolveTimeoutSeconds: 1,
  })
  const client3 = new AgentClient(hung.url)
  t.equal((await client3.resolveInfo(v1)).source, 'cache', 'v1 from the cache after the timeout')
  await rejectsWith(client3.resolveInfo(latest), 'TIMEOUT')
})
