/** Per-host bandwidth caps (token buckets) shared fairly across torrents and their peers. */
export { AUTO_BURST_MS, autoBurst, MAX_RATE, MIN_AUTO_BURST, TokenBucket } from './bucket.js'
export { type Clock, ManualClock, systemClock } from './clock.js'
export {
  BandwidthConfig,
  type BandwidthConfigT,
  BandwidthUpdate,
  type BandwidthUpdateT,
  ByteSize,
  parseByteSize,
} from './config.js'
export type { EgressFlow, IngressFlow } from './flow.js'
export { PauseGate } from './gate.js'
export {
  type BandwidthRates,
  type BandwidthSnapshot,
  type DirectionSnapshot,
  HostBandwidth,
  type HostBandwidthDeps,
} from './host.js'
export { registerBandwidthRoutes } from './http.js'
export {
  type Direction,
  Limiter,
  type LimiterOptions,
  type ObservableSource,
  type PausableSource,
} from './limiter.js'
