/**
 * Settings of the OneX node half on a host (the `onex.node` slice of the agent's config once the
 * plugin seam wires it): where Miners run, how their health is watched, how restarts back off,
 * and the bounds on what an image may be.
 */
import { z } from '../../config/index.js'

export const NodeRunnerConfigSchema = z.strictObject({
  /** Images are unpacked under <workDir>/images/<hex>, each Miner runs in <workDir>/miners/<name>. */
  workDir: z.string().min(1),
  /** The address node processes listen on (their port is chosen by the kernel: port 0). */
  host: z.string().min(1).default('127.0.0.1'),
  /** How often a node's GET /health is asked. */
  healthIntervalMs: z.number().int().min(20).max(600_000).default(2000),
  /** A /health answer slower than this counts as a failure. */
  healthTimeoutMs: z.number().int().min(20).max(60_000).default(2000),
  /** This many failed health checks in a row and the process is killed (then restarted per policy). */
  livenessFailures: z.number().int().min(1).max(1000).default(3),
  /** How long a started process has to write its port file (it is listening then). */
  startTimeoutMs: z.number().int().min(100).max(600_000).default(30_000),
  backoff: z
    .strictObject({
      /** The wait before the first restart; doubled after each start that never became healthy. */
      initialMs: z.number().int().min(0).max(600_000).default(1000),
      maxMs: z.number().int().min(0).max(3_600_000).default(60_000),
    })
    .prefault({}),
  limits: z
    .strictObject({
      /** The image tarball as pulled. */
      maxImageBytes: z
        .number()
        .int()
        .min(1024)
        .default(256 << 20),
      /** File data once unpacked. */
      maxUnpackedBytes: z
        .number()
        .int()
        .min(1024)
        .default(512 << 20),
      maxEntries: z.number().int().min(1).max(1_000_000).default(10_000),
      /** The genesis file (GoQuorum's are a few KiB). */
      maxGenesisBytes: z
        .number()
        .int()
        .min(1024)
        .default(1 << 20),
    })
    .prefault({}),
})
export type NodeRunnerConfig = z.input<typeof NodeRunnerConfigSchema>
export type NodeRunnerConfigT = z.infer<typeof NodeRunnerConfigSchema>
