/**
 * The onex plugin's config slice (`plugins: { onex: {...} }`), strict, every field defaulted:
 * the minerType table (OneX's four types → cpu, memory, difficulty), where genesis files are
 * pushed, and the controller's timings.
 */
import { z } from '../../config/index.js'

const MinerTypeResources = z.strictObject({
  cpuMillis: z.number().int().min(0).max(1_000_000),
  memoryMiB: z.number().int().min(0).max(10_000_000),
  /** The genesis difficulty of a chain of this type. */
  difficulty: z
    .number()
    .int()
    .min(0)
    .max(2 ** 48),
})
export type MinerTypeResourcesT = z.infer<typeof MinerTypeResources>

/** Figures chosen for this project (seed 000 names the types; its figures were not at hand). */
export const DEFAULT_MINER_TYPES: Record<string, MinerTypeResourcesT> = {
  'S1.SMALL1': { cpuMillis: 500, memoryMiB: 512, difficulty: 1 },
  'S1.SMALL2': { cpuMillis: 1000, memoryMiB: 1024, difficulty: 2 },
  'M1.MEDIUM1': { cpuMillis: 2000, memoryMiB: 2048, difficulty: 4 },
  'M1.MEDIUM2': { cpuMillis: 4000, memoryMiB: 4096, difficulty: 8 },
}

export const OnexControlConfigSchema = z.strictObject({
  minerTypes: z.record(z.string().min(1).max(63), MinerTypeResources).default(DEFAULT_MINER_TYPES),
  /** The Shoal namespace genesis files are pushed to. */
  namespace: z.string().min(1).max(200).default('default'),
  /** Genesis tags are `<tagHost>-/onex/<chain>-genesis.json:<digest prefix>`. */
  tagHost: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{0,62}$/)
    .default('onex'),
  /** A Host whose heartbeat is older than this is not Ready (no new Miners). */
  hostStaleSeconds: z.number().int().min(1).max(86_400).default(60),
  /** Everything is reconciled again this often even without a change (timeouts, stale hosts). */
  resyncSeconds: z.number().min(0.05).max(3600).default(5),
})
export type OnexControlConfig = z.infer<typeof OnexControlConfigSchema>
