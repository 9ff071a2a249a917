import t from 'tap'
import { LocalTagLock, RedisTagLock } from '../../lib/build-index/server/tag-lock.js'
import { closeRedis, connectRedis } from '../../lib/redis/index.js'
import { startTestRedis } from '../helpers/redis.js'
import { tagLockContract } from './tag-lock.contract.js'

tagLockContract(t, 'local', async (n) => {
  const lock = new LocalTagLock()
  return { locks: Array.from({ length: n }, () => lock), cleanup: async () => {} }
})

t.test('redis', async (t) => {
  const server = await startTestRedis(t)
  const config = { url: server.url, keyPrefix: 'test:', commandTimeoutMs: 2000, connectTimeoutMs: 5000 }
  const options = { ttlMs: 5000, acquireTimeoutMs: 5000 }
  // Each lock has its own connection: separate instances.
  tagLockContract(t, 'redis', async (n) => {
    const clients = await Promise.all(Array.from({ length: n }, () => connectRedis(config)))
    return {
      locks: clients.map((c) => new RedisTagLock(c, options)),
      cleanup: async () => {
        await Promise.all(clients.map((c) => closeRedis(c)))
      },
    }
  })

  t.test(
    'a holder that lost its lease cannot write; a lease held too long times the waiter out',
    async (t) => {
      const client = await connectRedis(config)
      t.teardown(() => closeRedis(client))
      const lock = new RedisTagLock(client, options)
      await t.rejects(
        lock.run('tags/lost', async (hold) => {
          // Another instance took over after an expiry: the lease is no longer ours.
          await client.set('build-index:lock:tags/lost', 'someone-else')
          await hold.check()
        }),
        { code: 'UNAVAILABLE', message: /lost the write lock/ },
      )
      t.equal(
        await client.get('build-index:lock:tags/lost'),
        'someone-else',
        "the other holder's lease stays",
      )
      const impatient = new RedisTagLock(client, { ttlMs: 5000, acquireTimeoutMs: 50 })
      await t.rejects(
        impatient.run('tags/lost', async () => {}),
        {
          code: 'UNAVAILABLE',
          message: /another build-index/,
        },
      )
    },
  )

  t.test('Redis unreachable: UNAVAILABLE, not a hang', async (t) => {
    const client = await connectRedis(config)
    const lock = new RedisTagLock(client, options)
    await closeRedis(client)
    await t.rejects(
      lock.run('tags/x', async () => {}),
      { code: 'UNAVAILABLE' },
    )
  })
})
