/**
 * One writer per tag at a time. TagStore's check-then-write (read the record, apply the rules,
 * write the record, its digest pair and its history entry) runs under the tag's lock:
 *
 * - LocalTagLock: a KeyedMutex in this process. Enough for one build-index per backend.
 * - RedisTagLock (config `redis` set): the same mutex, then a lease in Redis (SET NX PX with a
 *   random token, renewed while the work runs, released by a compare-and-delete script), so
 *   several build-index instances sharing one backend never interleave writes to one tag.
 *   Before the record is written, `check()` confirms the lease is still this holder's: a holder
 *   that lost it (stalled past the TTL, Redis restarted) fails with UNAVAILABLE instead of
 *   writing over the next holder's work. See docs/decisions.md, "Several build-index instances".
 */
import { randomBytes } from 'node:crypto'
import { ShoalError } from '../../errors/index.js'
import { type Redis, redisError } from '../../redis/index.js'
import { KeyedMutex } from './mutex.js'

/** What the work under a lock may ask: is the lock still mine? */
export interface LockHold {
  /** Rejects with UNAVAILABLE when the lock was lost; call right before the write that matters. */
  check(): Promise<void>
}

export interface TagLock {
  readonly kind: string
  run<T>(key: string, fn: (hold: LockHold) => Promise<T>): Promise<T>
}

const HELD: LockHold = { check: async () => {} }

export class LocalTagLock implements TagLock {
  readonly kind = 'local'
  private readonly mutex = new KeyedMutex()

  run<T>(key: string, fn: (hold: LockHold) => Promise<T>): Promise<T> {
    return this.mutex.run(key, () => fn(HELD))
  }
}

/** Deletes the lease only when it is still ours. */
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`
/** Extends the lease only when it is still ours: 1 when it was. */
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`

export interface RedisTagLockOptions {
  /** How long a lease lives without renewal (ms); renewed every ttlMs/3 while the work runs. */
  ttlMs: number
  /** How long to wait for another instance's lease before UNAVAILABLE (ms). */
  acquireTimeoutMs: number
}

export class RedisTagLock implements TagLock {
  readonly kind = 'redis'
  private readonly mutex = new KeyedMutex()

  /** `client` may be a getter: the daemon connects to Redis at start, after it built its parts. */
  constructor(
    private readonly client: Redis | (() => Redis | undefined),
    private readonly opts: RedisTagLockOptions,
  ) {}

  private get redis(): Redis {
    const redis = typeof this.client === 'function' ? this.client() : this.client
    if (!redis) throw new ShoalError('UNAVAILABLE', 'build-index is not connected to Redis yet')
    return redis
  }

  run<T>(key: string, fn: (hold: LockHold) => Promise<T>): Promise<T> {
    // The in-process mutex first: requests of this instance queue here, not in Redis polls.
    return this.mutex.run(key, async () => {
      const lease = `build-index:lock:${key}`
      const token = randomBytes(16).toString('hex')
      await this.acquire(lease, token, key)
      let lost = false
      const renew = setInterval(
        () => {
          this.redis
            .eval(RENEW, 1, lease, token, String(this.opts.ttlMs))
            .then((ok) => {
              if (ok !== 1) lost = true
            })
            // Redis down for a moment: check() will tell.
            .catch(() => {})
        },
        Math.max(10, Math.floor(this.opts.ttlMs / 3)),
      )
      renew.unref()
      const hold: LockHold = {
        check: async () => {
          let ok: unknown
          try {
            ok = await this.redis.eval(RENEW, 1, lease, token, String(this.opts.ttlMs))
          } catch (err) {
            throw redisError(err, `renewing the lock of ${key}`)
          }
          if (lost || ok !== 1)
            throw new ShoalError(
              'UNAVAILABLE',
              `lost the write lock of ${key} (held past its ${this.opts.ttlMs} ms lease, or Redis restarted); nothing was written, retry`,
            )
        },
      }
      try {
        return await fn(hold)
      } finally {
        clearInterval(renew)
        // A lease we cannot release expires by itself after ttlMs.
        await this.redis.eval(RELEASE, 1, lease, token).catch(() => {})
      }
    })
  }

  private async acquire(lease: string, token: string, key: string): Promise<void> {
    const deadline = Date.now() + this.opts.acquireTimeoutMs
    let wait = 5
    for (;;) {
      let got: string | null
      try {
        got = await this.redis.set(lease, token, 'PX', this.opts.ttlMs, 'NX')
      } catch (err) {
        throw redisError(err, `taking the write lock of ${key}`)
      }
      if (got === 'OK') return
      if (Date.now() + wait > deadline)
        throw new ShoalError(
          'UNAVAILABLE',
          `another build-index has been writing ${key} for over ${this.opts.acquireTimeoutMs} ms; retry`,
        )
      // Polling with backoff: a tag write takes milliseconds, so waits are short.
      await new Promise((r) => setTimeout(r, wait))
      wait = Math.min(wait * 2, 100)
    }
  }
}
