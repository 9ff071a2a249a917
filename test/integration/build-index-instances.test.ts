/**
 * Two build-index instances behind one backend (a real fs folder) and one real redis-server,
 * racing on the same tags through real HTTP: exactly one outcome per immutable version, and
 * no lost update for latest (its history is one unbroken chain of moves).
 */
import t, { type Test } from 'tap'
import { BuildIndexClient } from '../../lib/build-index/client/index.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import { testBuildIndex } from '../helpers/build-index.js'
import { startTestRedis } from '../helpers/redis.js'

const d = (n: number) => Digest.fromHex(n.toString(16).padStart(64, '0'))

async function twoInstances(t: Test) {
  const redis = await startTestRedis(t)
  const bi = await testBuildIndex(
    t,
    { redis: { url: redis.url }, history: { maxEntries: 1000 }, gc: { enabled: false } },
    'shoal-bi2-',
  )
  const servers = await Promise.all([bi.start(), bi.start()])
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
