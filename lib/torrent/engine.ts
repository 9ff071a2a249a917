/**
 * The BitTorrent engine of one daemon: one TCP listener and peer id shared by all torrents,
 * handshake routing by infohash, outgoing dials, the ban list and metrics.
 */
import { randomBytes } from 'node:crypto'
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import { networkInterfaces } from 'node:os'
import type { InfoHash, MetaInfo } from '../core/index.js'
import { ShoalError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import { counter, gauge, Registry } from '../metrics/index.js'
import type { EngineContext, EngineMetrics, ResolvedOptions } from './context.js'
import { Peer, type PeerHandshakeHandler } from './peer.js'
import { Torrent } from './torrent.js'
import {
  DEFAULTS,
  type DownloadStats,
  type EngineOptions,
  type PeerSource,
  type TorrentStorage,
} from './types.js'

const PEER_ID_PREFIX = { origin: '-SO0001-', agent: '-SA0001-' } as const
/** Connections still in their handshake, across all torrents: a cap against socket floods. */
const MAX_PENDING_HANDSHAKES = 256

export class TorrentEngine implements EngineContext, PeerHandshakeHandler {
  readonly logger: Logger
  readonly options: ResolvedOptions
  readonly metrics: EngineMetrics
  readonly peerSource: PeerSource
  private readonly _peerId: Buffer
  private readonly host: string
  private readonly requestedPort: number
  private readonly selfHosts: Set<string>
  private readonly torrents = new Map<string, Torrent>()
  private readonly connections = new Set<Peer>()
  private readonly dialTargets = new Map<Peer, Torrent>()
  /** Peer ids and addresses that sent corrupt data, with the time the ban ends. */
  private readonly bans = new Map<string, number>()
  /** Addresses that turned out to be us (e.g. a NATed or aliased address). */
  private readonly selfAddrs = new Set<string>()
  private server: Server | undefined
  private boundPort = 0
  private starting: Promise<void> | undefined
  private stopping: Promise<void> | undefined

  constructor(opts: EngineOptions) {
    this.logger = opts.logger.child({ component: 'torrent' })
    this.peerSource = opts.peerSource
    this.host = opts.host ?? '0.0.0.0'
    this.requestedPort = opts.port
    this.options = {
      maxConnectionsPerTorrent: opts.maxConnectionsPerTorrent ?? DEFAULTS.maxConnectionsPerTorrent,
      pipelineDepth: opts.pipelineDepth ?? DEFAULTS.pipelineDepth,
      requestTimeoutMs: opts.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs,
      banMs: opts.banMs ?? DEFAULTS.banMs,
      uploadSlots: opts.uploadSlots ?? DEFAULTS.uploadSlots,
    }
    this._peerId = Buffer.concat([Buffer.from(PEER_ID_PREFIX[opts.role], 'latin1'), randomBytes(12)])
    const registry = opts.registry ?? new Registry()
    this.metrics = {
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
    this.selfHosts = localAddresses([this.host, opts.announceHost])
  }

  get port(): number {
    return this.boundPort
  }

  get peerId(): Buffer {
    return this._peerId
  }

  start(): Promise<void> {
    if (this.stopping) return Promise.reject(new ShoalError('UNAVAILABLE', 'torrent engine is stopped'))
    this.starting ??= new Promise<void>((resolve, reject) => {
      const server = createServer({ noDelay: true }, this.onIncoming)
      server.once('error', reject)
      server.listen(this.requestedPort, this.host, () => {
        server.off('error', reject)
        server.on('error', (err) => this.logger.error({ err }, 'peer listener error'))
        this.server = server
        this.boundPort = (server.address() as AddressInfo).port
        this.logger.info(
          { host: this.host, port: this.boundPort, peerId: this._peerId.toString('latin1', 0, 8) },
          'peer listener started',
        )
        resolve()
      })
    }).catch((err: unknown) => {
      this.starting = undefined
      throw new ShoalError(
        'UNAVAILABLE',
        `cannot listen on ${this.host}:${this.requestedPort}: ${(err as Error).message}`,
        { cause: err },
      )
    })
    return this.starting
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const all = [...this.torrents.values()]
      this.torrents.clear()
      await Promise.all(all.map((t) => t.destroy('engine stopped')))
      for (const peer of [...this.connections]) peer.close('engine stopped')
      const server = this.server
      this.server = undefined
      if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
      this.logger.info('peer listener stopped')
    })()
    return this.stopping
  }

  seed(meta: MetaInfo, storage: TorrentStorage): void {
    this.ensure(meta, storage)
  }

  download(
    meta: MetaInfo,
    storage: TorrentStorage,
    opts: { signal?: AbortSignal } = {},
  ): Promise<DownloadStats> {
    if (this.stopping) return Promise.reject(new ShoalError('ABORTED', 'torrent engine is stopped'))
    let torrent: Torrent
    try {
      torrent = this.ensure(meta, storage)
    } catch (err) {
      return Promise.reject(err)
    }
    return torrent.wait(opts.signal)
  }

  remove(infoHash: InfoHash): void {
    const torrent = this.torrents.get(infoHash.hex)
    if (torrent) this.removeTorrent(torrent, 'removed')
  }

  stats(infoHash: InfoHash): DownloadStats | undefined {
    return this.torrents.get(infoHash.hex)?.snapshot()
  }

  private ensure(meta: MetaInfo, storage: TorrentStorage): Torrent {
    if (this.stopping) throw new ShoalError('UNAVAILABLE', 'torrent engine is stopped')
    // Announcing before the listener is bound would advertise port 0.
    if (this.server === undefined) throw new ShoalError('UNAVAILABLE', 'torrent engine is not started')
    const existing = this.torrents.get(meta.infoHash.hex)
    if (existing) return existing
    const torrent = new Torrent(meta, storage, this)
    this.torrents.set(meta.infoHash.hex, torrent)
    torrent.start()
    return torrent
  }

  // ----- EngineContext -----

  removeTorrent(torrent: Torrent, reason: string): void {
    if (this.torrents.get(torrent.infoHashHex) === torrent) this.torrents.delete(torrent.infoHashHex)
    void torrent.destroy(reason)
  }

  dial(torrent: Torrent, ip: string, port: number): Peer {
    const socket = connect({ host: ip, port })
    const peer = this.track(socket, 'out', ip, port)
    this.dialTargets.set(peer, torrent)
    peer.sendHandshake(torrent.infoHashBuf, this._peerId)
    return peer
  }

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

  // ----- PeerHandshakeHandler -----

  onHandshake(peer: Peer, infoHashHex: string, peerId: Buffer): boolean {
    const torrent = peer.direction === 'out' ? this.dialTargets.get(peer) : this.torrents.get(infoHashHex)
    if (torrent === undefined || torrent.removed || torrent.infoHashHex !== infoHashHex) {
      this.logger.debug({ peer: peer.addr, infoHash: infoHashHex }, 'handshake for an unknown torrent')
      return false
    }
    if (peerId.equals(this._peerId)) {
      if (peer.direction === 'out') this.selfAddrs.add(peer.addr)
      return false
    }
    if (this.isBanned(peer.idHex) || (peer.direction === 'out' && this.isBanned(peer.addr))) return false
    if (peer.direction === 'in') peer.sendHandshake(torrent.infoHashBuf, this._peerId)
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

  private readonly onIncoming = (socket: Socket): void => {
    if (this.stopping || this.pendingHandshakes() >= MAX_PENDING_HANDSHAKES) {
      socket.destroy()
      return
    }
    this.track(socket, 'in', stripMapped(socket.remoteAddress ?? '?'), socket.remotePort ?? 0)
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
}

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
