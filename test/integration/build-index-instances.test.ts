/**
 * Two build-index instances behind one backend (a real fs folder) and one real redis-server,
 * racing on the same tags through real HTTP: exactly one outcome per immutable version, and
 * no lost update for latest (its history is one unbroken chain of moves).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { FsBackend } from '../../lib/backend/fs.js'
import { BuildIndexClient } from '../../lib/build-index/client/index.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { startBuildIndex } from '../../lib/build-index/server/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import { HttpServer, sendEmpty, sendJson } from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { startTestRedis } from '../helpers/redis.js'

const logger = silentLogger()
const d = (n: number) => Digest.fromHex(n.toString(16).padStart(64, '0'))

/** An origin that holds every digest; its HEAD answers on the next tick, so puts overlap. */
async function fakeOrigin(t: Test): Promise<string> {
  const server = new HttpServer({ name: 'fake-origin', logger })
  const addr = await server.start(0, '127.0.0.1')
  const self = `127.0.0.1:${addr.port}`
  server.router.get('/blobs/:digest/locations', ({ res }) => sendJson(res, 200, { locations: [self] }))
  server.router.head('/namespace/:ns/blobs/:digest', ({ res }) =>
    sendEmpty(res, 200, { 'content-length': 1 }),
  )
  t.teardown(() => server.stop())
  return self
}

async function twoInstances(t: Test) {
  const root = await mkdtemp(join(tmpdir(), 'shoal-bi2-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const redis = await startTestRedis(t)
  const origin = await fakeOrigin(t)
  const config = validateConfig(BuildIndexConfigSchema, {
    server: { host: '127.0.0.1', port: 0 },
    origins: [origin],
    redis: { url: redis.url },
    history: { maxEntries: 1000 },
    gc: { enabled: false },
  })
  const servers = await Promise.all(
    [1, 2].map(() => startBuildIndex(config, { logger, backend: new FsBackend(join(root, 'backend')) })),
  )
  for (const s of servers) t.teardown(() => s.stop())
  return servers.map((s) => new BuildIndexClient(s.url)) as [BuildIndexClient, BuildIndexClient]
}

t.test('config: redis and lock are optional, strict', async (t) => {
  const c = validateConfig(BuildIndexConfigSchema, {})
  t.equal(c.redis, undefined)
  t.same(c.lock, { ttlMs: 30_000, acquireTimeoutMs: 10_000 })
  t.throws(() => validateConfig(BuildIndexConfigSchema, { lock: { ttl: 1 } }), { code: 'CONFIG_INVALID' })
})

t.test('latest: 2 × 30 concurrent moves, every one in the history, none lost', async (t) => {
  const [a, b] = await twoInstances(t)
  const tag = 'h-/data-race.csv:latest'
  const results = await Promise.all(
    Array.from({ length: 60 }, (_, i) => (i % 2 ? a : b).putTag(tag, d(i + 1), { actor: `w${i}` })),
  )
  const moves = results.filter((r) => r.result === 'moved').length
  const created = results.filter((r) => r.result === 'created').length
  t.equal(created, 1, 'one put created the tag')
  t.equal(moves, 59, 'every other put moved it')
  const { entries } = await a.history(tag, { limit: 1000 })
  t.equal(entries.length, 60, 'one history entry per write')
  const chain = [...entries].reverse()
  for (let i = 1; i < chain.length; i++)
    t.equal(chain[i]?.from, chain[i - 1]?.to, `move ${i} starts where move ${i - 1} ended (no lost update)`)
  // Read-after-write, from either instance: the record is the last move's target.
  const last = chain.at(-1)?.to
  t.equal((await a.getTag(tag)).toString(), last)
  t.equal((await b.getTag(tag)).toString(), last)
  // Every put's `previous` is distinct: no two writers saw the same old value.
  const previous = results.map((r) => r.previous).filter((p) => p !== undefined)
  t.equal(new Set(previous).size, previous.length)
})

t.test('immutable versions: exactly one writer wins each race', async (t) => {
  const [a, b] = await twoInstances(t)
  for (let v = 1; v <= 10; v++) {
    const tag = `h-/data-race.csv:v${v}`
    const outcomes = await Promise.all(
      [a, b].map((c, i) =>
        c.putTag(tag, d(100 * v + i)).then(
          (r) => r.result as string,
          (err) => (isShoalError(err, 'TAG_CONFLICT') ? 'conflict' : Promise.reject(err)),
        ),
      ),
    )
    t.same([...outcomes].sort(), ['conflict', 'created'], `v${v}: one created, one refused`)
    const stored = await b.getTag(tag)
    const winner = outcomes.indexOf('created')
    t.equal(stored.toString(), d(100 * v + winner).toString(), `v${v}: the stored digest is the winner's`)
    t.equal((await a.history(tag)).entries.length, 1)
  }
})
