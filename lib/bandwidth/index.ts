/** Per-host bandwidth caps (token buckets) shared fairly across torrents and their peers. */
export { AUTO_BURST_MS, autoBurst, MAX_RATE, MIN_AUTO_BURST, TokenBucket } from './bucket.js'
export { type Clock, ManualClock, systemClock } from './clock.js'
export { BandwidthConfig, type BandwidthConfigT, ByteSize, parseByteSize } from './config.js'
export type { EgressFlow, IngressFlow } from './flow.js'
export { type BandwidthRates, HostBandwidth, type HostBandwidthDeps } from './host.js'
export {
  type Direction,
  Limiter,
  type LimiterOptions,
  type ObservableSource,
  type PausableSource,
} from './limiter.js'
