/**
 * The engine's internals: the torrents by infohash, every connection, handshake routing,
 * outgoing dials, the ban list, recognising ourselves, options and metrics. Torrents and peers
 * talk to this (as EngineContext and PeerHandshakeHandler) rather than to TorrentEngine, so
 * that the public class shows callers only its API and none of this plumbing.
 */
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { networkInterfaces } from 'node:os'
import type { InfoHash, MetaInfo } from '../core/index.js'
import type { Logger } from '../log/index.js'
import { counter, gauge, Registry } from '../metrics/index.js'
import type { EngineContext, EngineMetrics, ResolvedOptions } from './context.js'
import { Peer, type PeerHandshakeHandler } from './peer.js'
import { Torrent } from './torrent.js'
import { DEFAULTS, type EngineOptions, type PeerSource, type TorrentStorage } from './types.js'

const PEER_ID_PREFIX = { origin: '-SO0001-', agent: '-SA0001-' } as const
/** Connections still in their handshake, across all torrents: a cap against socket floods. */
const MAX_PENDING_HANDSHAKES = 256

export class EngineCore implements EngineContext, PeerHandshakeHandler {
  readonly peerId: Buffer
  readonly logger: Logger
  readonly options: ResolvedOptions
  readonly metrics: EngineMetrics
  readonly peerSource: PeerSource
  private readonly selfHosts: Set<string>
  private readonly torrents = new Map<string, Torrent>()
  private readonly connections = new Set<Peer>()
  private readonly dialTargets = new Map<Peer, Torrent>()
  /** Peer ids and addresses that sent corrupt data, with the time the ban ends. */
  private readonly bans = new Map<string, number>()
  /** Addresses that turned out to be us (e.g. a NATed or aliased address). */
  private readonly selfAddrs = new Set<string>()
  private boundPort = 0
  /** Set by shutdown(): from then on incoming sockets are refused. */
  private closed = false

  constructor(opts: EngineOptions, listenHost: string) {
    this.logger = opts.logger.child({ component: 'torrent' })
    this.peerSource = opts.peerSource
    this.options = {
      maxConnectionsPerTorrent: opts.maxConnectionsPerTorrent ?? DEFAULTS.maxConnectionsPerTorrent,
      pipelineDepth: opts.pipelineDepth ?? DEFAULTS.pipelineDepth,
      requestTimeoutMs: opts.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs,
      banMs: opts.banMs ?? DEFAULTS.banMs,
      uploadSlots: opts.uploadSlots ?? DEFAULTS.uploadSlots,
    }
    this.peerId = Buffer.concat([Buffer.from(PEER_ID_PREFIX[opts.role], 'latin1'), randomBytes(12)])
    this.metrics = createMetrics(opts.registry ?? new Registry())
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

  /** The torrent for `meta`, created and started on first use. */
  open(meta: MetaInfo, storage: TorrentStorage): Torrent {
    const existing = this.torrents.get(meta.infoHash.hex)
    if (existing) return existing
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
    const all = [...this.torrents.values()]
    this.torrents.clear()
    await Promise.all(all.map((t) => t.destroy(reason)))
    for (const peer of [...this.connections]) peer.close(reason)
  }

  // ----- connections -----

  /** The listener's connection handler: bound once, so no closure per socket. */
  readonly accept = (socket: Socket): void => {
    if (this.closed || this.pendingHandshakes() >= MAX_PENDING_HANDSHAKES) {
      socket.destroy()
      return
    }
    this.track(socket, 'in', stripMapped(socket.remoteAddress ?? '?'), socket.remotePort ?? 0)
  }

  dial(torrent: Torrent, ip: string, port: number): Peer {
    const socket = connect({ host: ip, port })
    const peer = this.track(socket, 'out', ip, port)
    this.dialTargets.set(peer, torrent)
    peer.sendHandshake(torrent.infoHashBuf, this.peerId)
    return peer
  }

  onHandshake(peer: Peer, infoHashHex: string, peerId: Buffer): boolean {
    const torrent = peer.direction === 'out' ? this.dialTargets.get(peer) : this.torrents.get(infoHashHex)
    if (torrent === undefined || torrent.removed || torrent.infoHashHex !== infoHashHex) {
      this.logger.debug({ peer: peer.addr, infoHash: infoHashHex }, 'handshake for an unknown torrent')
      return false
    }
    if (peerId.equals(this.peerId)) {
      if (peer.direction === 'out') this.selfAddrs.add(peer.addr)
      return false
    }
    if (this.isBanned(peer.idHex) || (peer.direction === 'out' && this.isBanned(peer.addr))) return false
    if (peer.direction === 'in') peer.sendHandshake(torrent.infoHashBuf, this.peerId)
    return torrent.attach(peer)
  }

  onClose(peer: Peer): void {
    this.connections.delete(peer)
    const torrent = this.dialTargets.get(peer)
    if (torrent) {
      this.dialTargets.delete(peer)
      torrent.onDialClosed(peer)
    }
  }

  private track(socket: Socket, direction: 'in' | 'out', ip: string, port: number): Peer {
    const peer = new Peer({
      socket,
      direction,
      ip,
      port,
      handshakeTimeoutMs: this.options.handshakeTimeoutMs,
      logger: this.logger,
      handler: this,
    })
    this.connections.add(peer)
    return peer
  }

  private pendingHandshakes(): number {
    let n = 0
    for (const p of this.connections) if (!p.handshaken) n++
    return n
  }

  // ----- who not to talk to -----

  ban(peer: Peer): void {
    const until = Date.now() + this.options.banMs
    if (peer.idHex) this.bans.set(peer.idHex, until)
    if (peer.direction === 'out') this.bans.set(peer.addr, until)
    this.metrics.bans.inc()
    this.logger.warn({ peer: peer.addr, peerId: peer.idHex, banMs: this.options.banMs }, 'peer banned')
  }

  isBanned(key: string): boolean {
    const until = this.bans.get(key)
    if (until === undefined) return false
    if (until > Date.now()) return true
    this.bans.delete(key)
    return false
  }

  isSelf(ip: string, port: number): boolean {
    const addr = `${ip}:${port}`
    return this.selfAddrs.has(addr) || (port === this.boundPort && this.selfHosts.has(stripMapped(ip)))
  }
}

function createMetrics(registry: Registry): EngineMetrics {
  return {
    sent: counter(registry, 'shoal_torrent_bytes_sent_total', 'Block bytes uploaded to peers'),
    received: counter(registry, 'shoal_torrent_bytes_received_total', 'Block bytes received from peers', [
      'source',
    ]),
    verified: counter(
      registry,
      'shoal_torrent_pieces_verified_total',
      'Pieces downloaded, verified and written',
    ),
    badPieces: counter(
      registry,
      'shoal_torrent_pieces_failed_total',
      'Pieces that failed SHA-1 verification',
    ),
    bans: counter(registry, 'shoal_torrent_peer_bans_total', 'Peers blacklisted for sending corrupt data'),
    peers: gauge(registry, 'shoal_torrent_peers', 'Connected peers (handshaken), over all torrents'),
  }
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
