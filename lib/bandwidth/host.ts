/**
 * A host's bandwidth: the egress and ingress limiters a daemon (agent or origin) shares among
 * all its torrents and peers, built from the `bandwidth` config section.
 */
import type { Logger } from '../log/index.js'
import type { Registry } from '../metrics/index.js'
import type { Clock } from './clock.js'
import { type BandwidthConfigT, DEFAULT_API_FLOOR } from './config.js'
import { Limiter } from './limiter.js'
import { reportLimiter } from './metrics.js'

export interface HostBandwidthDeps {
  /** The daemon's registry; absent = no metrics. */
  registry?: Registry
  logger?: Logger
  clock?: Clock
}

export interface BandwidthRates {
  egressBytesPerSec?: number
  ingressBytesPerSec?: number
  /** 0 = auto; absent = unchanged. */
  burstBytes?: number
}

export interface DirectionSnapshot {
  /** The token bucket in effect (the automatic one when burstBytes is 0); 0 = unlimited. */
  burstBytes: number
  /** Bytes granted to send (egress) or read from peers (ingress) since start. */
  bytes: number
  /** Time during which at least one connection waited for this cap. */
  throttledSeconds: number
  /** Connections waiting for bandwidth now. */
  waitingFlows: number
}

export interface BandwidthSnapshot {
  egressBytesPerSec: number
  ingressBytesPerSec: number
  /** As configured: 0 = automatic. */
  burstBytes: number
  egress: DirectionSnapshot
  ingress: DirectionSnapshot
}

function directionSnapshot(l: Limiter): DirectionSnapshot {
  return {
    burstBytes: l.burst,
    bytes: l.bytes,
    throttledSeconds: Math.round(l.throttledSeconds * 1000) / 1000,
    waitingFlows: l.waiting,
  }
}

export class HostBandwidth {
  /** Ask it before writing piece data to a peer: `egress.flow(infoHashHex)` per connection. */
  readonly egress: Limiter
  /** Pauses peer sockets while reads are over the cap: `ingress.register(socket, key)`. */
  readonly ingress: Limiter
  private readonly unreport: Array<() => void> = []
  private closed = false

  /** Lowest non-zero cap `PUT /bandwidth` accepts. */
  readonly apiFloor: number

  constructor(
    config: Omit<BandwidthConfigT, 'apiFloorBytesPerSec'> & { apiFloorBytesPerSec?: number },
    deps: HostBandwidthDeps = {},
  ) {
    this.apiFloor = config.apiFloorBytesPerSec ?? DEFAULT_API_FLOOR
    const logger = deps.logger?.child({ component: 'bandwidth' })
    const common = { burstBytes: config.burstBytes, clock: deps.clock, logger }
    this.egress = new Limiter({ direction: 'egress', bytesPerSec: config.egressBytesPerSec, ...common })
    this.ingress = new Limiter({ direction: 'ingress', bytesPerSec: config.ingressBytesPerSec, ...common })
    if (deps.registry) {
      this.unreport.push(
        reportLimiter(deps.registry, this.egress),
        reportLimiter(deps.registry, this.ingress),
      )
    }
    logger?.info(
      {
        egressBytesPerSec: this.egress.rate,
        ingressBytesPerSec: this.ingress.rate,
        egressBurst: this.egress.burst,
        ingressBurst: this.ingress.burst,
      },
      'bandwidth limits',
    )
  }

  /** Changes caps at run time; absent fields stay as they are, 0 = unlimited. */
  setRates(r: BandwidthRates): void {
    if (r.egressBytesPerSec !== undefined || r.burstBytes !== undefined)
      this.egress.setRate(r.egressBytesPerSec ?? this.egress.rate, r.burstBytes)
    if (r.ingressBytesPerSec !== undefined || r.burstBytes !== undefined)
      this.ingress.setRate(r.ingressBytesPerSec ?? this.ingress.rate, r.burstBytes)
  }

  /** What `GET /bandwidth` answers: the settings, and per direction what is in effect. */
  snapshot(): BandwidthSnapshot {
    return {
      egressBytesPerSec: this.egress.rate,
      ingressBytesPerSec: this.ingress.rate,
      burstBytes: this.egress.burstSetting,
      egress: directionSnapshot(this.egress),
      ingress: directionSnapshot(this.ingress),
    }
  }

  /** Releases everything waiting and stops limiting; metrics keep the totals. Idempotent. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.egress.close()
    this.ingress.close()
    for (const u of this.unreport) u()
  }
}
