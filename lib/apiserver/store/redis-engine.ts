/**
 * The shared engine: several herds (or other processes) on one Redis see one store. Each write
 * is one Lua script (one round trip, atomic): compare the stored resourceVersion, INCR the
 * global counter, write the object, and XADD the change to a stream whose entry IDs are the
 * resourceVersions (`<rv>-0`), trimmed to about `historyEvents`. Watches read the stream with
 * XRANGE from their cursor; one XREAD BLOCK loop per engine (on its own connection) wakes the
 * local watchers when any process writes.
 *
 * Keys (under the client's keyPrefix): `api:rv` counter, `api:log` stream, and per collection
 * `api:objs:<coll>` (hash key → JSON without resourceVersion), `api:rvs:<coll>` (hash key →
 * resourceVersion), `api:idx:<coll>` (sorted set of keys, for ordered listing by namespace).
 */
import { ShoalError } from '../../errors/index.js'
import { closeRedis, connectRedis, type Redis, type RedisConfigT, redisError } from '../../redis/index.js'
import type { Resource } from '../types.js'
import type { CommitResult, StorageEngine, StoredEvent } from './types.js'
import { ChangeWaiters } from './waiters.js'

export interface RedisEngineOptions {
  redis: RedisConfigT
  historyEvents?: number
}

const COUNTER = 'api:rv'
const LOG = 'api:log'

const COMMIT_LUA = `
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if ARGV[2] == '' then
  if cur then return {'exists'} end
else
  if not cur then return {'missing'} end
  if cur ~= ARGV[2] then return {'conflict'} end
end
local old = ''
if ARGV[3] == 'MODIFIED' then old = redis.call('HGET', KEYS[1], ARGV[1]) or '' end
local rv = redis.call('INCR', KEYS[4])
if ARGV[3] == 'DELETED' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
  redis.call('HSET', KEYS[2], ARGV[1], rv)
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], rv .. '-0', 't', ARGV[3], 'c', ARGV[5], 'o', ARGV[4], 'p', old)
return {'ok', tostring(rv)}
`

const LIST_LUA = `
local rv = redis.call('GET', KEYS[4]) or '0'
local keys = redis.call('ZRANGEBYLEX', KEYS[3], ARGV[1], ARGV[2])
local out = {rv}
for i, k in ipairs(keys) do
  out[#out + 1] = redis.call('HGET', KEYS[1], k) or ''
  out[#out + 1] = redis.call('HGET', KEYS[2], k) or '0'
end
return out
`

const READ_LUA = `
return {redis.call('HGET', KEYS[1], ARGV[1]) or '', redis.call('HGET', KEYS[2], ARGV[1]) or ''}
`

type Client = Redis & {
  apiCommit(...args: (string | number)[]): Promise<string[]>
  apiList(...args: string[]): Promise<string[]>
  apiRead(...args: string[]): Promise<string[]>
}

export class RedisEngine implements StorageEngine {
  private client: Client | undefined
  private blocking: Redis | undefined
  private readonly waiters = new ChangeWaiters()
  private latest = 0
  private closing = false
  private pump: Promise<void> | undefined
  private readonly historyEvents: number

  constructor(private readonly opts: RedisEngineOptions) {
    this.historyEvents = opts.historyEvents ?? 10_000
  }

  async open(): Promise<void> {
    const client = (await connectRedis(this.opts.redis, 'shoal-apiserver')) as Client
    this.client = client
    client.defineCommand('apiCommit', { numberOfKeys: 5, lua: COMMIT_LUA })
    client.defineCommand('apiList', { numberOfKeys: 4, lua: LIST_LUA })
    client.defineCommand('apiRead', { numberOfKeys: 2, lua: READ_LUA })
    this.blocking = await connectRedis(this.opts.redis, 'shoal-apiserver-watch')
    this.latest = await this.currentRv()
    this.pump = this.follow()
  }

  async close(): Promise<void> {
    this.closing = true
    this.waiters.wakeAll()
    if (this.blocking) this.blocking.disconnect()
    await this.pump
    if (this.client) await closeRedis(this.client)
  }

  private c(): Client {
    if (!this.client) throw new ShoalError('UNAVAILABLE', 'the Redis resource store is not open')
    return this.client
  }

  async read(coll: string, key: string): Promise<Resource | undefined> {
    const [json, rv] = await this.c()
      .apiRead(objs(coll), rvs(coll), key)
      .catch((err) => {
        throw redisError(err, 'resource read')
      })
    return json ? parseObject(json, rv as string) : undefined
  }

  async commit(
    coll: string,
    key: string,
    expected: string | undefined,
    type: StoredEvent['type'],
    obj: Resource,
  ): Promise<CommitResult> {
    const json = JSON.stringify({ ...obj, metadata: { ...obj.metadata, resourceVersion: '' } })
    const [outcome, rv] = await this.c()
      .apiCommit(
        objs(coll),
        rvs(coll),
        idx(coll),
        COUNTER,
        LOG,
        key,
        expected ?? '',
        type,
        json,
        coll,
        this.historyEvents,
      )
      .catch((err) => {
        throw redisError(err, 'resource write')
      })
    if (outcome === 'ok') return { ok: true, rv: Number(rv) }
    return { ok: false, reason: outcome as 'exists' | 'missing' | 'conflict' }
  }

  async list(coll: string, namespace: string | undefined): Promise<{ rv: number; items: Resource[] }> {
    // Keys are `ns/name`, and namespaces never hold '/', so one namespace is the range [ns/, ns0).
    const [min, max] = namespace === undefined ? ['-', '+'] : [`[${namespace}/`, `(${namespace}0`]
    const out = await this.c()
      .apiList(objs(coll), rvs(coll), idx(coll), COUNTER, min, max)
      .catch((err) => {
        throw redisError(err, 'resource list')
      })
    const items: Resource[] = []
    for (let i = 1; i + 1 < out.length; i += 2)
      if (out[i]) items.push(parseObject(out[i] as string, out[i + 1] as string))
    return { rv: Number(out[0]), items }
  }

  async currentRv(): Promise<number> {
    const v = await this.c()
      .get(COUNTER)
      .catch((err) => {
        throw redisError(err, 'resource counter read')
      })
    return Number(v ?? 0)
  }

  async events(after: number, limit: number): Promise<StoredEvent[]> {
    const res = await this.c()
      .multi()
      .xrange(LOG, '-', '+', 'COUNT', 1)
      .get(COUNTER)
      .xrange(LOG, `${after + 1}-0`, '+', 'COUNT', limit)
      .exec()
      .catch((err) => {
        throw redisError(err, 'resource history read')
      })
    if (!res) throw new ShoalError('UNAVAILABLE', 'Redis resource history read aborted')
    for (const [err] of res) if (err) throw redisError(err, 'resource history read')
    const first = ((res[0]?.[1] ?? []) as [string, string[]][])[0]
    const counter = Number(res[1]?.[1] ?? 0)
    const floor = first ? idRv(first[0]) - 1 : counter
    if (after < floor)
      throw new ShoalError(
        'GONE',
        `resourceVersion ${after} is older than the history kept (from ${floor}): list again`,
      )
    return ((res[2]?.[1] ?? []) as [string, string[]][]).map(([id, fields]) => toEvent(idRv(id), fields))
  }

  waitForChange(after: number, ms: number, signal?: AbortSignal): Promise<void> {
    if (this.closing) return Promise.resolve()
    return this.waiters.wait(this.latest, after, ms, signal)
  }

  /**
   * Follows the stream's tail and wakes local watchers, whoever wrote. Blocks for less than
   * the command timeout (ioredis would otherwise fail the XREAD); errors (Redis restarting)
   * back off and retry, and the watchers' own timeouts re-poll meanwhile.
   */
  private async follow(): Promise<void> {
    const blockMs = Math.max(10, Math.floor(this.opts.redis.commandTimeoutMs / 2))
    while (!this.closing) {
      try {
        const res = (await (this.blocking as Redis).xread(
          'COUNT',
          100,
          'BLOCK',
          blockMs,
          'STREAMS',
          LOG,
          `${this.latest}-0`,
        )) as [string, [string, string[]][]][] | null
        const entries = res?.[0]?.[1] ?? []
        const last = entries[entries.length - 1]
        if (last) {
          this.latest = Math.max(this.latest, idRv(last[0]))
          this.waiters.notify(this.latest)
        }
      } catch {
        if (this.closing) return
        await new Promise((r) => setTimeout(r, 200))
      }
    }
  }
}

const objs = (coll: string) => `api:objs:${coll}`
const rvs = (coll: string) => `api:rvs:${coll}`
const idx = (coll: string) => `api:idx:${coll}`

function idRv(id: string): number {
  return Number(id.slice(0, id.indexOf('-')))
}

function parseObject(json: string, rv: string): Resource {
  const obj = JSON.parse(json) as Resource
  obj.metadata.resourceVersion = rv
  return obj
}

function toEvent(rv: number, fields: string[]): StoredEvent {
  const f: Record<string, string> = {}
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i] as string] = fields[i + 1] as string
  const type = f.t as StoredEvent['type']
  const obj = parseObject(f.o as string, String(rv))
  if (type === 'MODIFIED' && f.p)
    return { rv, coll: f.c as string, type, obj, old: JSON.parse(f.p) as Resource }
  return { rv, coll: f.c as string, type, obj }
}
