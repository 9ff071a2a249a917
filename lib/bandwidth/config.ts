/**
 * The `bandwidth` section of the agent and origin configs. Rates are bytes per second, written
 * as integers or as sizes ("8MiB", "100MB/s", "800Mbit/s"); 0 means unlimited.
 */
import { z } from '../config/index.js'
import { MAX_RATE } from './bucket.js'

/** Default floor of caps set through `PUT /bandwidth`: 64 KiB/s. */
export const DEFAULT_API_FLOOR = 64 << 10

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gib: 1024 ** 3,
  t: 1e12,
  tb: 1e12,
  tib: 1024 ** 4,
}
const BIT_UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12 }
const SIZE = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*(?:\/\s*s|ps)?$/

/**
 * Parses "8MiB", "8 MiB/s", "100MB", "1.5GiB", "800Mbit/s" (decimal k/M/G/T, binary KiB/MiB...)
 * into bytes. A lone lower-case "b" (as in "8Mb") is refused: bits or bytes is a guess.
 */
export function parseByteSize(text: string): number | string {
  const m = SIZE.exec(text.trim())
  if (m === null) return `"${text}" is not a size (examples: 8388608, "8MiB", "100MB/s", "800Mbit/s")`
  const value = Number(m[1])
  const unit = m[2]!
  let factor: number | undefined
  const bits = /^([kmgt]?)bits?$/i.exec(unit)
  if (bits !== null) factor = BIT_UNITS[bits[1]!.toLowerCase()]! / 8
  else if (/^[kmgtKMGT]?b$/.test(unit)) return `"${text}": write B for bytes or bit for bits`
  else factor = UNITS[unit.toLowerCase()]
  if (factor === undefined) return `"${text}": unknown unit "${unit}"`
  const bytes = Math.round(value * factor)
  if (bytes > MAX_RATE) return `"${text}" is more than ${MAX_RATE} bytes`
  return bytes
}

/** An integer byte count, or a size string; always a number after parsing. */
export const ByteSize = z.union([
  z.number().int().min(0).max(MAX_RATE),
  z.string().transform((text, ctx) => {
    const r = parseByteSize(text)
    if (typeof r === 'number') return r
    ctx.addIssue({ code: 'custom', message: r })
    return z.NEVER
  }),
])

export const BandwidthConfig = z
  .strictObject({
    /** Cap on bytes sent to peers by this host, per second; 0 = unlimited. */
    egressBytesPerSec: ByteSize.default(0),
    /** Cap on bytes read from peers by this host, per second; 0 = unlimited. */
    ingressBytesPerSec: ByteSize.default(0),
    /** Token bucket size for both directions; 0 = auto (40 ms of the cap, at least 16 KiB). */
    burstBytes: ByteSize.default(0),
    /**
     * `PUT /bandwidth` refuses a cap below this (0, unlimited, is always accepted), so a
     * mistaken or hostile call cannot throttle the host to a crawl; the config itself may go lower.
     */
    apiFloorBytesPerSec: ByteSize.default(DEFAULT_API_FLOOR),
  })
  .prefault({})

export type BandwidthConfigT = z.infer<typeof BandwidthConfig>

/**
 * Body of `PUT /bandwidth` on the agent and origin APIs: any of the config's keys, the same
 * units; absent keys stay as they are, 0 = unlimited (burst: automatic).
 */
export const BandwidthUpdate = z.strictObject({
  egressBytesPerSec: ByteSize.optional(),
  ingressBytesPerSec: ByteSize.optional(),
  burstBytes: ByteSize.optional(),
})

export type BandwidthUpdateT = z.infer<typeof BandwidthUpdate>
