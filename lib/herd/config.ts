/**
 * `shoal herd`: the central services in one process. The herd wires the services to each
 * other (ports from docs/architecture.md §3, counted from basePort, or bound on port 0 and wired as
 * bound when basePort is 0); a section per service may
 * override anything else, and is validated by that service's own strict schema.
 */
import { LogConfig, z } from '../config/index.js'
import { PluginsConfig } from '../plugins/index.js'

const Section = z.record(z.string(), z.unknown()).default({})

export const HerdConfigSchema = z.strictObject({
  log: LogConfig,
  /** Origin cache, local backend (blobs and tags) live under here. */
  dataDir: z.string().min(1).default('./data/herd'),
  /** Address agents and CLIs use to reach the herd (written into metainfo and peer lists). */
  advertiseHost: z.string().min(1).default('127.0.0.1'),
  /** Address the services listen on. */
  bindHost: z.string().min(1).default('0.0.0.0'),
  /** Proxy port; origin peer +1, origin HTTP +2, tracker +3, build-index +4, resource API +6. 0: each binds port 0 (tests). */
  basePort: z.number().int().min(0).max(65530).default(15000),
  origin: Section,
  tracker: Section,
  buildIndex: Section,
  proxy: Section,
  /**
   * The resource API (lib/apiserver, docs/resource-api.md) on its own port. `enabled: false`
   * turns it off; the rest is lib/apiserver's schema: by default the file store in
   * <dataDir>/apiserver, `store: { type: redis, redis: {...} }` for a store several herds share.
   */
  apiserver: Section,
  /**
   * The event log (lib/events, docs/events.md), kept in the resource API's store: retention
   * (maxEvents, maxAgeSeconds) and the recorder's queue. Only logged when the API is off.
   */
  events: Section,
  /** Plugins to load (docs/plugins.md): name → that plugin's own strict config, e.g. `onex: {}`. */
  plugins: PluginsConfig,
})

export type HerdConfig = z.infer<typeof HerdConfigSchema>

export const HERD_PORT_OFFSETS = {
  proxy: 0,
  originPeer: 1,
  originHttp: 2,
  tracker: 3,
  buildIndex: 4,
  apiserver: 6,
} as const
