/**
 * lib/redis against a real redis-server: connect, a command, the key prefix, a clear error when
 * nothing listens, commands failing fast (not queueing) while Redis is down, and the client
 * coming back by itself after a restart.
 */
import t from 'tap'
import { validateConfig } from '../../lib/config/index.js'
import { closeRedis, connectRedis, RedisConfig, redactedRedisUrl } from '../../lib/redis/index.js'
import { startTestRedis } from '../helpers/redis.js'

t.test('connect, prefix, down, back', async (t) => {
  const redis = await startTestRedis(t)
  const config = validateConfig(RedisConfig, { url: redis.url, keyPrefix: 'test:' })
  const client = await connectRedis(config, 'redis-test')
  t.teardown(() => closeRedis(client))
  await client.set('k', 'v')
  t.equal(await client.get('k'), 'v')
  const bare = await connectRedis(validateConfig(RedisConfig, { url: redis.url, keyPrefix: '' }))
  t.equal(await bare.get('test:k'), 'v', 'every key carries the prefix')
  await closeRedis(bare)

  await redis.restart()
  // While it is away or just back, commands fail fast or succeed; they never hang.
  const deadline = Date.now() + 10_000
  let back = false
  while (!back && Date.now() < deadline) {
    back = await client.set('k2', 'v2').then(
      () => true,
      () => false,
    )
    if (!back) await new Promise((r) => setTimeout(r, 100))
  }
  t.ok(back, 'the client reconnected by itself')
  t.equal(await client.get('k'), null, 'a restarted Redis without persistence is empty')
})

t.test('nothing listening: UNAVAILABLE naming the address, no password shown', async (t) => {
  const config = validateConfig(RedisConfig, { url: 'redis://:secret@127.0.0.1:1', connectTimeoutMs: 500 })
  await t.rejects(connectRedis(config), {
    code: 'UNAVAILABLE',
    message: /^cannot connect to Redis at redis:\/\/\*\*\*@127\.0\.0\.1:1/,
  })
  t.equal(redactedRedisUrl('redis://user:pw@h:6379/0'), 'redis://***@h:6379/0')
})
