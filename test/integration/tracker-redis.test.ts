/**
 * Trackers on a shared Redis peer store, against a real redis-server: a peer announced to one
 * tracker is handed out by another; Redis going away makes announces fail with a tracker failure
 * reason (never a crash) and, once it is back, announces recover within one interval; a swarm of
 * 10,000 peers answers with a bounded sample, and every swarm key carries an expiry.
 */
import t, { type Test } from 'tap'
import { validateConfig } from '../../lib/config/index.js'
import { InfoHash } from '../../lib/core/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { closeRedis, connectRedis } from '../../lib/redis/index.js'
import { TrackerClient } from '../../lib/tracker/client/index.js'
import { TrackerConfigSchema } from '../../lib/tracker/config.js'
import { RedisPeerStore } from '../../lib/tracker/peerstore/redis.js'
import { startTracker } from '../../lib/tracker/server/index.js'
import { startTestRedis, type TestRedis } from '../helpers/redis.js'
import { startTestTracker } from '../helpers/tracker.js'

const logger = silentLogger()
const INFO_HASH = InfoHash.fromBytes(Buffer.from('0123456789abcdef0123456789abcdef01234567', 'hex'))
const INTERVAL_S = 5
const peerIdOf = (n: number) => Buffer.from(`-SR0001-${String(n).padStart(12, '0')}`)

async function tracker(t: Test, redis: TestRedis, keyPrefix: string) {
  const { tracker: server, announce } = await startTestTracker(t, {
    infoHash: INFO_HASH,
    peerIdPrefix: '-SR0001-',
    settings: {
      announceInterval: INTERVAL_S,
      minInterval: 1,
      peerTtlSeconds: 3 * INTERVAL_S,
      peerStore: { type: 'redis', redis: { url: redis.url, keyPrefix, commandTimeoutMs: 1000 } },
    },
  })
  return { server, announce: (n: number, port: number, left = 100) => announce(n, port, left) }
}

async function until<T>(what: string, deadlineMs: number, attempt: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + deadlineMs
  let last: unknown
  for (;;) {
    try {
      const got = await attempt()
      if (got !== undefined) return got
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`${what} not within ${deadlineMs} ms: ${String(last)}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

t.test('two trackers on one Redis hand out each other’s peers', async (t) => {
  const redis = await startTestRedis(t)
  const a = await tracker(t, redis, 'share:')
  const b = await tracker(t, redis, 'share:')
  await a.announce(1, 7001, 0)
  const fromB = await b.announce(2, 7002)
  t.same(
    fromB.peers.map((p) => p.port),
    [7001],
    'the seeder announced to tracker A is handed out by tracker B',
  )
  const fromA = await a.announce(3, 7003)
  t.same(fromA.peers.map((p) => p.port).sort(), [7001, 7002], 'and A knows the peer that announced to B')

  // bittorrent-tracker's stock client, an independent announce implementation, joins through B
  // and is handed out by A. No type declarations ship with it; a computed specifier keeps tsc out.
  const spec: string = 'bittorrent-tracker/client'
  const { default: Client } = (await import(spec)) as {
    default: new (
      opts: Record<string, unknown>,
    ) => NodeJS.EventEmitter & { start(): void; destroy(cb?: () => void): void }
  }
  const stock = new Client({
    infoHash: INFO_HASH.hex,
    peerId: Buffer.from('-SR0001-stockclient0').toString('hex'),
    announce: [`${b.server.url}/announce`],
    port: 7777,
  })
  const warnings: string[] = []
  stock.on('warning', (err: Error) => warnings.push(err.message))
  stock.on('error', (err: Error) => warnings.push(err.message))
  const update = new Promise((resolve) => stock.once('update', resolve))
  stock.start()
  await update
  t.teardown(() => new Promise<void>((r) => stock.destroy(() => r())))
  t.same(warnings, [], 'the stock client announced without warnings')
  t.ok(
    (await a.announce(5, 7005)).peers.some((p) => p.port === 7777),
    'the stock client that announced to B is handed out by A',
  )

  const other = await tracker(t, redis, 'other-cluster:')
  t.same((await other.announce(4, 7004)).peers, [], 'another key prefix is another cluster')
})

t.test('Redis restarted: a clear failure while it is down, recovery within one interval', async (t) => {
  const redis = await startTestRedis(t)
  const a = await tracker(t, redis, 'restart:')
  const b = await tracker(t, redis, 'restart:')
  await a.announce(1, 7001, 0)
  t.equal((await b.announce(2, 7002)).peers.length, 1)

  await redis.stop()
  await t.rejects(
    a.announce(1, 7001, 0),
    { code: 'UPSTREAM_REFUSED', message: /tracker error/ },
    'an announce while Redis is down gets a failure reason',
  )
  const health = await fetch(`${a.server.url}/health`)
  t.equal(health.status, 200, 'the tracker process is still serving')
  await health.arrayBuffer()

  await redis.restart()
  // Within one announce interval of Redis coming back, the peers' next announces succeed again
  // (the client reconnects with backoff of at most 2 s) and the swarm is rebuilt.
  await until('announce to A after the restart', INTERVAL_S * 1000, () => a.announce(1, 7001, 0))
  const again = await until('announce to B after the restart', INTERVAL_S * 1000, () => b.announce(2, 7002))
  t.same(
    again.peers.map((p) => p.port),
    [7001],
    'the swarm is back, shared again',
  )
})

t.test('10,000 peers in one swarm: bounded answers, expiring keys, cheap stats', async (t) => {
  const redis = await startTestRedis(t)
  const redisConfig = { url: redis.url, keyPrefix: 'big:', commandTimeoutMs: 5000, connectTimeoutMs: 5000 }
  const store = await RedisPeerStore.connect({ redis: redisConfig, maxPeersPerInfoHash: 20_000 })
  t.teardown(() => store.close())
  const ih = 'c'.repeat(40)
  const N = 10_000
  for (let start = 0; start < N; start += 500) {
    await Promise.all(
      Array.from({ length: 500 }, (_, k) => {
        const i = start + k
        return store.announce(
          ih,
          {
            peerId: i.toString(16).padStart(40, '0'),
            ip: i % 2 ? `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` : `2001:db8::${i.toString(16)}`,
            port: 6881,
            complete: i % 10 === 0,
            origin: false,
          },
          60_000,
        )
      }),
    )
  }
  t.same(await store.counts(ih), { complete: 1000, incomplete: 9000 })
  const got = await store.exchange(
    ih,
    { peerId: 'f'.repeat(40), ip: '2001:db8::ffff', port: 7000, complete: false, origin: false },
    60_000,
    51,
  )
  t.equal(got.peers.length, 51, 'the answer is the asked-for sample, not the swarm')
  t.ok(
    got.peers.slice(0, 51).every((p) => p.complete),
    'seeders first (1,000 of them, more than the sample)',
  )
  t.ok(
    got.peers.some((p) => p.ip.includes(':')),
    'IPv6 peers come back as literals',
  )
  t.same(await store.stats(), { swarms: 1, origins: 0, seeders: 1000, leechers: 9001 })

  const raw = await connectRedis({ ...redisConfig, keyPrefix: '' })
  t.teardown(() => closeRedis(raw))
  const keys = await raw.keys('big:tracker:s:*')
  t.ok(keys.length >= 4, `swarm keys exist (${keys.join(', ')})`)
  for (const key of keys) {
    const ttl = await raw.pttl(key)
    t.ok(ttl > 0 && ttl <= 61_000, `${key} expires (${ttl} ms)`)
  }
})

t.test('zones over HTTP: same-zone peers first within each class, both stores', async (t) => {
  const redis = await startTestRedis(t)
  for (const peerStore of [
    { type: 'memory' },
    { type: 'redis', redis: { url: redis.url, keyPrefix: 'zones:' } },
  ] as const) {
    const config = validateConfig(TrackerConfigSchema, {
      server: { host: '127.0.0.1', port: 0 },
      peerStore,
    })
    const server = await startTracker(config, { logger })
    t.teardown(() => server.stop())
    const announce = (n: number, zone: string | undefined, left: number, numwant = 50) =>
      new TrackerClient(server.url, zone === undefined ? {} : { zone }).announce({
        infoHash: INFO_HASH,
        peerId: peerIdOf(n),
        port: 7000 + n,
        uploaded: 0,
        downloaded: 0,
        left,
        event: 'started',
        numwant,
      })
    // Ports tell the zone: 71xx rack-a, 72xx rack-b, 73xx none.
    for (let i = 0; i < 8; i++) await announce(200 + i, 'rack-b', 0)
    for (let i = 0; i < 2; i++) await announce(100 + i, 'rack-a', 0)
    for (let i = 0; i < 8; i++) await announce(210 + i, 'rack-b', 10)
    for (let i = 0; i < 3; i++) await announce(110 + i, 'rack-a', 10)
    for (let i = 0; i < 3; i++) await announce(300 + i, undefined, 10)
    const zoneOf = (port: number) => (port < 7200 ? 'a' : port < 7300 ? 'b' : '-')
    const got = await announce(120, 'rack-a', 10, 8)
    t.same(
      got.peers.map((p) => zoneOf(p.port)),
      ['a', 'a', 'b', 'b', 'b', 'b', 'b', 'b'],
      `${peerStore.type}: rack-a seeders first, then other seeders fill the answer`,
    )
    const leechers = await announce(121, 'rack-a', 10, 50)
    const tags = leechers.peers.map(
      (p) => `${p.port < 7110 || (p.port >= 7200 && p.port < 7210) ? 's' : 'l'}${zoneOf(p.port)}`,
    )
    t.same(
      tags.slice(0, 10),
      ['sa', 'sa', 'sb', 'sb', 'sb', 'sb', 'sb', 'sb', 'sb', 'sb'],
      `${peerStore.type}: seeders (rack-a first) before leechers`,
    )
    t.same(
      tags.slice(10, 14),
      ['la', 'la', 'la', 'la'],
      `${peerStore.type}: then the rack-a leechers (the previous announcer included)`,
    )
    t.equal(tags.length, 10 + 4 + 8 + 3)
    const res = await fetch(
      `${server.url}/announce?info_hash=${'%01'.repeat(20)}&peer_id=${'%02'.repeat(20)}&port=1&zone=no%20spaces`,
    )
    t.match(Buffer.from(await res.arrayBuffer()).toString(), /failure reason.*zone/, 'a bad zone is refused')
  }
})
