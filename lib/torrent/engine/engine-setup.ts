/**
 * The engine's options resolved against their defaults, and its metrics: set up once per
 * engine (EngineCore's constructor), kept apart from the connection and ban bookkeeping.
 */
import { ShoalError } from '../../errors/index.js'
import { counter, gauge, type Registry } from '../../metrics/index.js'
import {
  type EngineTuning,
  type ResolvedOptions,
  TUNABLE_KEYS,
  TUNABLES,
  TUNING_DEFAULTS,
} from '../tuning.js'
import type { EngineMetrics } from './context.js'

/**
 * Every tunable with its default (tuning.ts), each given value checked by the same schema the
 * daemons' config uses, so a bad option names its key whether it came from a file or a caller.
 */
export function resolveOptions(opts: EngineTuning): ResolvedOptions {
  const o: Record<string, unknown> = { ...TUNING_DEFAULTS }
  for (const key of TUNABLE_KEYS) {
    const value = opts[key]
    if (value === undefined) continue
    const checked = TUNABLES[key].schema.safeParse(value)
    if (!checked.success) {
      throw new ShoalError(
        'CONFIG_INVALID',
        `engine option ${key}=${JSON.stringify(value)}: ${checked.error.issues[0]?.message ?? 'invalid'}`,
      )
    }
    o[key] = value
  }
  return o as ResolvedOptions
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
