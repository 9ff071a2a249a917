/**
 * The engine's options resolved against their defaults, and its metrics: set up once per
 * engine (EngineCore's constructor), kept apart from the connection and ban bookkeeping.
 */
import { ShoalError } from '../errors/index.js'
import { counter, gauge, type Registry } from '../metrics/index.js'
import type { EngineMetrics, ResolvedOptions } from './context.js'
import { DEFAULTS, type EngineTuning, validBlockSize } from './types.js'

/** Every tunable with its default; a block size that is not a power of two is refused. */
export function resolveOptions(opts: EngineTuning): ResolvedOptions {
  const o: ResolvedOptions = {
    maxConnectionsPerTorrent: opts.maxConnectionsPerTorrent ?? DEFAULTS.maxConnectionsPerTorrent,
    maxConnections: opts.maxConnections ?? DEFAULTS.maxConnections,
    maxConnectionsPerIp: opts.maxConnectionsPerIp ?? DEFAULTS.maxConnectionsPerIp,
    maxConnectionsPerIpPerTorrent:
      opts.maxConnectionsPerIpPerTorrent ?? DEFAULTS.maxConnectionsPerIpPerTorrent,
    maxPendingPerIp: opts.maxPendingPerIp ?? DEFAULTS.maxPendingPerIp,
    blockSize: opts.blockSize ?? DEFAULTS.blockSize,
    pipelineDepth: opts.pipelineDepth ?? DEFAULTS.pipelineDepth,
    pipelineQueueMs: opts.pipelineQueueMs ?? DEFAULTS.pipelineQueueMs,
    requestTimeoutMs: opts.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
    stallStrikes: opts.stallStrikes ?? DEFAULTS.stallStrikes,
    connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
    handshakeTimeoutMs: opts.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs,
    incomingHandshakeTimeoutMs: opts.incomingHandshakeTimeoutMs ?? DEFAULTS.incomingHandshakeTimeoutMs,
    firstMessageTimeoutMs: opts.firstMessageTimeoutMs ?? DEFAULTS.firstMessageTimeoutMs,
    seedIdleTimeoutMs: opts.seedIdleTimeoutMs ?? DEFAULTS.seedIdleTimeoutMs,
    leechIdleTimeoutMs: opts.leechIdleTimeoutMs ?? DEFAULTS.leechIdleTimeoutMs,
    banMs: opts.banMs ?? DEFAULTS.banMs,
    originBanMs: opts.originBanMs ?? DEFAULTS.originBanMs,
    uploadSlots: opts.uploadSlots ?? DEFAULTS.uploadSlots,
    optimisticUnchokeMs: opts.optimisticUnchokeMs ?? DEFAULTS.optimisticUnchokeMs,
    slotIdleMs: opts.slotIdleMs ?? DEFAULTS.slotIdleMs,
    idlePeerEvictMs: opts.idlePeerEvictMs ?? DEFAULTS.idlePeerEvictMs,
    originServeOnceMs: opts.originServeOnceMs ?? DEFAULTS.originServeOnceMs,
    hashOnWorker: opts.hashOnWorker ?? DEFAULTS.hashOnWorker,
  }
  if (!validBlockSize(o.blockSize)) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `blockSize ${o.blockSize} is not a power of two from 16 KiB to 1 MiB`,
    )
  }
  return o
}

export function createMetrics(registry: Registry): EngineMetrics {
  const received = counter(
    registry,
    'shoal_torrent_bytes_received_total',
    'Block bytes received from peers',
    ['source'],
  )
  const refusedConnections = counter(
    registry,
    'shoal_torrent_connections_refused_total',
    'Incoming peer connections refused at accept, by the limit they hit (host or address; connections or pending handshakes)',
    ['reason'],
  )
  return {
    sent: counter(registry, 'shoal_torrent_bytes_sent_total', 'Block bytes uploaded to peers'),
    received,
    receivedFrom: { origin: received.labels('origin'), agent: received.labels('agent') },
    stalls: counter(
      registry,
      'shoal_torrent_peer_stalls_total',
      'Times a peer left our requests unanswered past requestTimeoutMs',
    ),
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
    bans: counter(registry, 'shoal_torrent_peer_bans_total', 'Peers blacklisted (corrupt data or stalls)'),
    refused: counter(
      registry,
      'shoal_torrent_requests_refused_total',
      'Requests a capped origin rejected: it had just queued the piece for another peer',
    ),
    peers: gauge(registry, 'shoal_torrent_peers', 'Connected peers (handshaken), over all torrents'),
    connectionsRefused: {
      host_connections: refusedConnections.labels('host_connections'),
      host_pending: refusedConnections.labels('host_pending'),
      address_connections: refusedConnections.labels('address_connections'),
      address_pending: refusedConnections.labels('address_pending'),
    },
    evicted: counter(
      registry,
      'shoal_torrent_peers_evicted_total',
      'Peers closed to free a slot or a connection: they asked for nothing with theirs',
    ),
  }
}
