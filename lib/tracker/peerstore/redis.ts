/**
 * Redis peer store: several trackers on one Redis share every swarm, so any of them can answer
 * any announce. Each operation is one EVALSHA of the script in redis-script.ts (an announce
 * stores, samples and counts in one round trip, atomically). Growth is bounded three ways: peers
 * expire (scores filter them at once, pruning and key expiry free them), each swarm keeps at most
 * maxPeersPerInfoHash (stalest announce evicted), and all swarms together at most maxPeers.
 * Sampling uses ZRANDMEMBER, O(limit) whatever the swarm's size.
 *
 * While Redis is unreachable every call fails with UNAVAILABLE at once (lib/redis turns the
 * offline queue off); the tracker answers that announce with a failure reason, and the client
 * reconnects in the background. A restarted Redis starts empty: peers are back within one
 * announce interval, as each re-announces.
 */
import { isIP } from 'node:net'
import { ShoalError } from '../../errors/index.js'
import { closeRedis, connectRedis, type Redis, type RedisConfigT, redisError } from '../../redis/index.js'
import { PEER_STORE_LUA } from './redis-script.js'
import {
  checkInfoHash,
  checkPeerRecord,
  checkZone,
  type Exchange,
  type PeerRecord,
  type PeerStore,
  type PeerStoreStats,
  peerClass,
  type SwarmCounts,
} from './types.js'

export interface RedisPeerStoreOptions {
  redis: RedisConfigT
  maxPeersPerInfoHash?: number
  maxPeers?: number
}

const COMMAND = 'shoalPeerStore'

type ScriptReply = Array<number | string>
type Scripted = Redis & { [COMMAND](...args: Array<string | number>): Promise<ScriptReply> }

export class RedisPeerStore implements PeerStore {
  readonly kind = 'redis'
  private closed = false

  private constructor(
    private readonly client: Scripted,
    /** Every key of the store starts with this (the script builds keys itself, so ioredis's keyPrefix does not apply). */
    private readonly prefix: string,
    private readonly maxPerInfoHash: number,
    private readonly maxPeers: number,
  ) {}

  /** Connects (UNAVAILABLE when Redis cannot be reached within connectTimeoutMs). */
  static async connect(opts: RedisPeerStoreOptions): Promise<RedisPeerStore> {
    const client = await connectRedis(opts.redis, 'shoal-tracker')
    client.defineCommand(COMMAND, { numberOfKeys: 0, lua: PEER_STORE_LUA })
    return new RedisPeerStore(
      client as Scripted,
      `${opts.redis.keyPrefix}tracker:`,
      opts.maxPeersPerInfoHash ?? 5000,
      opts.maxPeers ?? 1_000_000,
    )
  }

  async announce(infoHash: string, peer: PeerRecord, ttlMs: number): Promise<void> {
    await this.exchange(infoHash, peer, ttlMs, 0)
  }

  async exchange(infoHash: string, peer: PeerRecord, ttlMs: number, limit: number): Promise<Exchange> {
    this.checkOpen()
    checkInfoHash(infoHash)
    checkPeer(peer)
    if (!(ttlMs > 0)) throw new ShoalError('BAD_REQUEST', 'peer ttl must be positive')
    const reply = await this.run(
      'announce',
      'announce',
      infoHash,
      peer.peerId,
      peer.ip,
      peer.port,
      peerClass(peer),
      peer.complete ? 1 : 0,
      Math.ceil(ttlMs),
      this.maxPerInfoHash,
      this.maxPeers,
      Math.max(0, Math.floor(limit)),
      peer.zone ?? '',
    )
    return { counts: countsOf(reply), peers: recordsOf(reply) }
  }

  async remove(infoHash: string, peerIdHex: string, ip: string): Promise<void> {
    this.checkOpen()
    checkInfoHash(infoHash)
    await this.run('remove', 'remove', infoHash, `${peerIdHex} ${ip}`)
  }

  async peers(infoHash: string, limit: number, zone?: string): Promise<PeerRecord[]> {
    this.checkOpen()
    checkInfoHash(infoHash)
    checkZone(zone)
    if (limit <= 0) return []
    return recordsOf(await this.run('peers', 'peers', infoHash, Math.floor(limit), zone ?? ''))
  }

  async counts(infoHash: string): Promise<SwarmCounts> {
    this.checkOpen()
    checkInfoHash(infoHash)
    return countsOf(await this.run('counts', 'counts', infoHash))
  }

  async stats(): Promise<PeerStoreStats> {
    this.checkOpen()
    const [swarms, origins, seeders, leechers] = (await this.run('stats', 'stats')).map(Number)
    return { swarms: swarms ?? 0, origins: origins ?? 0, seeders: seeders ?? 0, leechers: leechers ?? 0 }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await closeRedis(this.client)
  }

  private async run(what: string, ...args: Array<string | number>): Promise<ScriptReply> {
    try {
      return await this.client[COMMAND](this.prefix, ...args)
    } catch (err) {
      throw redisError(err, `peer store ${what}`)
    }
  }

  private checkOpen(): void {
    if (this.closed)
      throw new ShoalError('UNAVAILABLE', 'the peer store is closed (the tracker is shutting down)')
  }
}

/** The script splits records on ' ' and '|': only a hex id and a real IP literal reach it. */
function checkPeer(peer: PeerRecord): void {
  checkPeerRecord(peer)
  if (isIP(peer.ip) === 0)
    throw new ShoalError('BAD_REQUEST', `peer ip "${peer.ip.slice(0, 64)}" is not an IP literal`)
}

function countsOf(reply: ScriptReply): SwarmCounts {
  return { complete: Number(reply[0] ?? 0), incomplete: Number(reply[1] ?? 0) }
}

/** Pairs after the two counts: "peerId ip", "<class><complete>|<port>|<zone>". */
function recordsOf(reply: ScriptReply): PeerRecord[] {
  const out: PeerRecord[] = []
  for (let i = 2; i + 1 < reply.length; i += 2) {
    const key = String(reply[i])
    const value = String(reply[i + 1])
    const [, port, zone] = value.split('|')
    out.push({
      peerId: key.slice(0, 40),
      ip: key.slice(41),
      port: Number(port),
      complete: value[1] === '1',
      origin: value[0] === '0',
      ...(zone ? { zone } : {}),
    })
  }
  return out
}
