/**
 * The engine's internals: the torrents by infohash, every connection, handshake routing,
 * outgoing dials, the ban list, recognising ourselves, options and metrics. Torrents and peers
 * talk to this (as EngineContext and PeerHandshakeHandler) rather than to TorrentEngine, so
 * that the public class shows callers only its API and none of this plumbing.
 */
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { networkInterfaces } from 'node:os'
import { type Clock, type HostBandwidth, systemClock } from '../../bandwidth/index.js'
import type { InfoHash, MetaInfo } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { Registry } from '../../metrics/index.js'
import { ZoneCounter } from '../download/zone-bytes.js'
import { BLOCK_SIZE, type EngineOptions, type PeerSource, type TorrentStorage, ZONE_LABEL } from '../types.js'
import { BlockPool } from '../upload/block-pool.js'
import { MseResponder } from '../wire/mse.js'
import { Peer, type PeerHandshakeHandler } from '../wire/peer.js'
import { adoptReads, ReadSink } from '../wire/read-buffer.js'
import type { EngineContext, EngineMetrics, RefusalReason, ResolvedOptions } from './context.js'
import { createMetrics, resolveOptions } from './engine-setup.js'
import { Torrent } from './torrent.js'

const PEER_ID_PREFIX = { origin: '-SO0001-', agent: '-SA0001-' } as const
/**
 * Incoming connections still in their handshake, across all torrents: a cap against socket
 * floods. One address holds at most maxPendingPerIp of them (accept), so it takes many
 * addresses to fill it.
 */
const MAX_PENDING_HANDSHAKES = 256
/** Ban entries kept at most (each ban adds two or three); past it the oldest go first. */
const MAX_BANS = 4096

export class EngineCore implements EngineContext, PeerHandshakeHandler {
  readonly peerId: Buffer
  readonly logger: Logger
  readonly options: ResolvedOptions
  readonly metrics: EngineMetrics
  readonly blocks: BlockPool
  readonly peerSource: PeerSource
  readonly bandwidth: HostBandwidth | undefined
  readonly clock: Clock
  readonly zone: string | undefined
  private readonly zoneBytes: ZoneCounter
  private readonly selfHosts: Set<string>
  private readonly torrents = new Map<string, Torrent>()
  private readonly connections = new Set<Peer>()
  private readonly dialTargets = new Map<Peer, Torrent>()
  /**
   * Incoming connections by remote IP, from accept to close (MSE stage included): how many,
   * and how many have not handshaken yet. An entry goes when its last connection does.
   */
  private readonly fromIp = new Map<string, FromIp>()
  /** Incoming connections not handshaken yet, over every address. */
  private pendingIn = 0
  /**
   * Who sent corrupt data or stalled, per torrent, with the time the ban ends: keys are
   * "<infohash> <what>", where what is a peer id (hex), a dialled "ip:port" address, or (under
   * ipBanKey) an IP incoming connections for that torrent are refused from. Per torrent, so
   * one bad copy of one blob never locks a peer (an origin above all) out of every other blob.
   * Entries are kept in the order they were (re)banned, roughly expiry order (a few durations:
   * banMs, stallBanMs, originBanMs): expired entries are pruned from the front, the rest when
   * looked up, and past MAX_BANS the oldest are dropped.
   */
  private readonly bans = new Map<string, number>()
  /** Addresses that turned out to be us (e.g. a NATed or aliased address). */
  private readonly selfAddrs = new Set<string>()
  private boundPort = 0
  /** Set by shutdown(): from then on incoming sockets are refused. */
  private closed = false
  /**
   * Interop hook (lib/torrent/wire/mse.ts, docs/interop.md): stock clients open with an MSE/PE
   * handshake; incoming sockets are answered here first (a plain handshake passes straight
   * through), then tracked with the bytes already read as `head`.
   */
  private readonly mse = new MseResponder(
    this,
    this.torrents,
    (socket, ip, port, head, deadline) => {
      // The plain handshake gets what is left of the time the MSE stage started with.
      const handshakeMs = Math.max(1, deadline - Date.now())
      // A plain socket is re-created to read into one buffer, as dialled ones do; an encrypted
      // one (Rc4Socket) keeps its 'data' events.
      const sink = new ReadSink()
      const adopted = adoptReads(socket, sink)
      if (adopted === undefined) {
        this.track(socket, 'in', ip, port, head, handshakeMs)
        return
      }
      const rest = adopted.head.length === 0 ? head : Buffer.concat([head, adopted.head])
      sink.target = this.track(adopted.socket, 'in', ip, port, rest, handshakeMs)
    },
    (ip) => this.releaseIn(ip, true),
  )

  constructor(opts: EngineOptions, listenHost: string) {
    this.logger = opts.logger.child({ component: 'torrent' })
    this.peerSource = opts.peerSource
    this.bandwidth = opts.bandwidth
    this.clock = opts.clock ?? systemClock
    if (opts.zone !== undefined && !ZONE_LABEL.test(opts.zone))
      throw new ShoalError('CONFIG_INVALID', 'zone must be 1-64 letters, digits, dots, dashes or underscores')
    this.zone = opts.zone
    this.options = resolveOptions(opts)
    this.peerId = Buffer.concat([Buffer.from(PEER_ID_PREFIX[opts.role], 'latin1'), randomBytes(12)])
    const registry = opts.registry ?? new Registry()
    this.metrics = createMetrics(registry)
    this.zoneBytes = new ZoneCounter(registry, this.zone, () => this.connections)
    this.blocks = new BlockPool(this.options.blockSize, MAX_POOLED_BLOCKS)
    this.selfHosts = localAddresses([listenHost, opts.announceHost])
  }

  /** The bound listen port (0 until the listener is up): announced, and used to spot ourselves. */
  get port(): number {
    return this.boundPort
  }

  listening(port: number): void {
    this.boundPort = port
  }

  // ----- torrents -----

  torrent(infoHash: InfoHash): Torrent | undefined {
    return this.torrents.get(infoHash.hex)
  }

  /**
   * The torrent for `meta`, created and started on first use. Opening it again with the same
   * storage returns it; with another storage object it throws rather than silently keep the
   * old one (whose bytes may be the very ones the caller is replacing, e.g. a blob that failed
   * its whole-blob check): the caller must remove() the infohash first.
   */
  open(meta: MetaInfo, storage: TorrentStorage): Torrent {
    const existing = this.torrents.get(meta.infoHash.hex)
    if (existing) {
      if (existing.storage === storage) return existing
      const state = existing.complete ? 'seeding' : 'downloading'
      throw new ShoalError(
        'TORRENT_ERROR',
        `torrent ${meta.infoHash.hex} is already ${state} from another storage; remove() it first`,
      )
    }
    const torrent = new Torrent(meta, storage, this)
    this.torrents.set(meta.infoHash.hex, torrent)
    torrent.start()
    return torrent
  }

  removeTorrent(torrent: Torrent, reason: string): void {
    if (this.torrents.get(torrent.infoHashHex) === torrent) this.torrents.delete(torrent.infoHashHex)
    void torrent.destroy(reason)
  }

  /** Destroys every torrent (waiting for their 'stopped' announces), then every connection. */
  async shutdown(reason: string): Promise<void> {
    this.closed = true
    this.mse.close()
    const all = [...this.torrents.values()]
    this.torrents.clear()
    await Promise.all(all.map((t) => t.destroy(reason)))
    for (const peer of [...this.connections]) peer.close(reason)
  }

  // ----- connections -----

  /**
   * The listener's connection handler: bound once, so no closure per socket. Refused: over
   * the engine's limits, or the address's own (maxPendingPerIp, maxConnectionsPerIp), so an
   * address that floods us is refused while every other one is still accepted.
   * Bans are per torrent, so they are checked at the handshake (which names the torrent).
   */
  readonly accept = (socket: Socket): void => {
    const ip = stripMapped(socket.remoteAddress ?? '?')
    const o = this.options
    const from = this.fromIp.get(ip)
    const refused = this.closed ? 'closed' : this.refusal(from)
    if (refused !== undefined) {
      if (refused !== 'closed') this.metrics.connectionsRefused[refused].inc()
      socket.destroy()
      return
    }
    if (from === undefined) this.fromIp.set(ip, { open: 1, pending: 1 })
    else {
      from.open++
      from.pending++
    }
    this.pendingIn++
    // From here the socket ends in track() or releaseIn(), through the MSE stage.
    this.mse.accept(
      socket,
      ip,
      socket.remotePort ?? 0,
      Math.min(o.handshakeTimeoutMs, o.incomingHandshakeTimeoutMs),
    )
  }

  /** The limit a new connection from an address with `from` open would pass, if any. */
  private refusal(from: FromIp | undefined): RefusalReason | undefined {
    const o = this.options
    if (this.connections.size >= o.maxConnections) return 'host_connections'
    if (this.pendingIn >= MAX_PENDING_HANDSHAKES) return 'host_pending'
    if (from === undefined) return undefined
    if (from.pending >= o.maxPendingPerIp) return 'address_pending'
    if (from.open >= o.maxConnectionsPerIp) return 'address_connections'
    return undefined
  }

  /** Below the engine-wide connection limit (every torrent, pending connections included). */
  canConnect(): boolean {
    return !this.closed && this.connections.size < this.options.maxConnections
  }

  dial(torrent: Torrent, ip: string, port: number): Peer {
    // Reads land in one buffer per connection (wire/read-buffer.ts).
    const sink = new ReadSink()
    const socket = connect({ host: ip, port, onread: sink.options() })
    const peer = this.track(socket, 'out', ip, port)
    sink.target = peer
    this.dialTargets.set(peer, torrent)
    peer.sendHandshake(torrent.infoHashBuf, this.peerId)
    return peer
  }

  onHandshake(peer: Peer, infoHashHex: string, peerId: Buffer): boolean {
    if (peer.direction === 'in') this.handshakenIn(peer.ip)
    const torrent = peer.direction === 'out' ? this.dialTargets.get(peer) : this.torrents.get(infoHashHex)
    if (torrent === undefined || torrent.removed || torrent.infoHashHex !== infoHashHex) {
      this.logger.debug({ peer: peer.addr, infoHash: infoHashHex }, 'handshake for an unknown torrent')
      return false
    }
    if (peerId.equals(this.peerId)) {
      if (peer.direction === 'out') this.selfAddrs.add(peer.addr)
      return false
    }
    const t = torrent.infoHashHex
    if (
      this.isBanned(t, peer.idHex) ||
      this.isBanned(t, peer.direction === 'out' ? peer.addr : ipBanKey(peer.ip))
    )
      return false
    if (peer.direction === 'in') peer.sendHandshake(torrent.infoHashBuf, this.peerId)
    return torrent.attach(peer)
  }

  onClose(peer: Peer): void {
    if (this.connections.has(peer)) this.zoneBytes.closed(peer)
    if (this.connections.delete(peer) && peer.direction === 'in') this.releaseIn(peer.ip, !peer.handshaken)
    const torrent = this.dialTargets.get(peer)
    if (torrent) {
      this.dialTargets.delete(peer)
      torrent.onDialClosed(peer)
    }
  }

  /**
   * Every connection becomes a Peer here. `head`: bytes already read from the socket (e.g. by
   * an MSE/PE negotiation), parsed before anything the socket delivers later.
   */
  private track(
    socket: Socket,
    direction: 'in' | 'out',
    ip: string,
    port: number,
    head?: Buffer,
    handshakeMs: number = this.options.handshakeTimeoutMs,
  ): Peer {
    const o = this.options
    const peer = new Peer({
      socket,
      direction,
      ip,
      port,
      timeouts: {
        connectMs: o.connectTimeoutMs,
        handshakeMs,
        firstMessageMs: o.firstMessageTimeoutMs,
      },
      blockSize: this.blockOffer(),
      logger: this.logger,
      handler: this,
      clock: this.clock,
    })
    this.connections.add(peer)
    if (head !== undefined) peer.receive(head)
    return peer
  }

  /**
   * The block size offered to Shoal peers on a new connection: under an egress cap, at most
   * 1/32 s of the cap. A block larger than the token bucket still goes out whole (leaving a
   * debt), so a 1-s window can carry one block beyond the cap: 256 KiB blocks at 4 MiB/s
   * would be 6 %; halving them to 128 KiB keeps it under the auto burst's 4 %.
   */
  private blockOffer(): number {
    const cap = this.bandwidth?.egress.rate ?? 0
    let b = this.options.blockSize
    if (cap > 0) while (b > BLOCK_SIZE && b > cap / 32) b >>= 1
    return b
  }

  /** An incoming connection from `ip` handshook: no longer pending. */
  private handshakenIn(ip: string): void {
    const from = this.fromIp.get(ip)
    if (from === undefined || from.pending === 0) return
    from.pending--
    this.pendingIn--
  }

  /** An incoming connection from `ip` ended (`pending`: before its handshake). */
  private releaseIn(ip: string, pending: boolean): void {
    const from = this.fromIp.get(ip)
    if (from === undefined) return
    if (pending && from.pending > 0) {
      from.pending--
      this.pendingIn--
    }
    if (--from.open <= 0) this.fromIp.delete(ip)
  }

  // ----- who not to talk to -----

  /**
   * Bans the peer from one torrent: its id, and its address: the dialled ip:port (we dial it
   * no more for this torrent), and the IP, from which incoming connections for this torrent
   * are refused (their ports are ephemeral, and a peer id is whatever the peer says, so the id
   * alone would let it reconnect as someone new). Dials are not refused by IP: an origin may
   * share an address with a banned peer (NAT, one test host).
   */
  ban(infoHashHex: string, peer: Peer, reason: string, ms: number = this.options.banMs): void {
    const now = this.clock.now()
    const until = now + ms
    const scope = `${infoHashHex} `
    if (peer.idHex) this.addBan(scope + peer.idHex, until, now)
    if (peer.direction === 'out') this.addBan(scope + peer.addr, until, now)
    this.addBan(scope + ipBanKey(peer.ip), until, now)
    this.metrics.bans.inc()
    this.logger.warn(
      { infoHash: infoHashHex, peer: peer.addr, peerId: peer.idHex, cls: peer.cls, banMs: ms, reason },
      'peer banned from a torrent',
    )
  }

  private addBan(key: string, until: number, now: number): void {
    const bans = this.bans
    // A shorter ban (a stall) never shortens a longer one already running (corrupt data).
    until = Math.max(until, bans.get(key) ?? 0)
    bans.delete(key) // re-inserted at the end, where the latest expiry belongs
    for (const [k, t] of bans) {
      if (t > now && bans.size < MAX_BANS) break
      bans.delete(k)
    }
    bans.set(key, until)
  }

  /** Called on handshakes and dials only (never per message), so the key string is cheap. */
  isBanned(infoHashHex: string, key: string): boolean {
    const k = `${infoHashHex} ${key}`
    const until = this.bans.get(k)
    if (until === undefined) return false
    if (until > this.clock.now()) return true
    this.bans.delete(k)
    return false
  }

  isSelf(ip: string, port: number): boolean {
    const addr = `${ip}:${port}`
    return this.selfAddrs.has(addr) || (port === this.boundPort && this.selfHosts.has(stripMapped(ip)))
  }
}

/** Incoming connections from one address (EngineCore.fromIp). */
interface FromIp {
  open: number
  pending: number
}

/** Upload buffers kept for reuse: 8 MiB at 256 KiB blocks, more than ~20 peers keep in flight. */
const MAX_POOLED_BLOCKS = 32

/** The ban key of an IP (incoming connections); a space never occurs in ids or ip:port keys. */
function ipBanKey(ip: string): string {
  return `ip ${ip}`
}

/** IPv4 peers reach a dual-stack listener as '::ffff:a.b.c.d'; compare them as plain IPv4. */
function stripMapped(ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip
}

/** Every address that reaches this host, so an announce listing us is not dialled. */
function localAddresses(extra: Array<string | undefined>): Set<string> {
  const out = new Set<string>(['127.0.0.1', '::1', '0.0.0.0', '::', 'localhost'])
  for (const e of extra) if (e) out.add(stripMapped(e))
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) out.add(stripMapped(a.address))
  }
  return out
}
