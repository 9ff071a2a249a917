/**
 * What the OneX node half runs and what it reports, without depending on the control half's
 * types: the control half (lib/onex/control) turns a Miner scheduled on this host into a
 * MinerAssignment, and turns the MinerNodeStatus reports back into the Miner's status. The field
 * names follow OneX's Miner (restartPolicy, podDeletionTimeout, podRef, addresses, PodHealthy).
 */
import { z } from '../../config/index.js'

const DigestString = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'a digest is sha256:<64 lower-case hex>')

/** A node id as the example node takes it (and a Miner name is): a DNS label, at most 63. */
export const NodeId = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/, 'lower-case letters, digits, . and -, at most 63')

/** GoQuorum's static-nodes entry: enode://<node id>@<host>:<port>; port 0 = not known yet. */
export const EnodeUrl = z
  .string()
  .max(400)
  .regex(
    /^enode:\/\/[a-z0-9.-]{1,63}@[0-9A-Za-z.[\]:-]{1,255}:[0-9]{1,5}$/,
    'enode://<node id>@<host>:<port>',
  )

export const RestartPolicy = z.enum(['Always', 'OnFailure', 'Never'])
export type RestartPolicyT = z.infer<typeof RestartPolicy>

export const MinerAssignmentSchema = z.strictObject({
  /** The Miner's name: the folder it runs in and, unless nodeId says otherwise, its node id. */
  name: NodeId,
  /** The id the node goes by in the static-nodes whitelist (default: name). */
  nodeId: NodeId.optional(),
  chainName: z.string().min(1).max(253),
  /** The node image tarball (the Chain's status.imageDigest). */
  imageDigest: DigestString,
  /** The rendered GoQuorum genesis file (the Chain's status.genesisDigest). */
  genesisDigest: DigestString,
  /**
   * The chain's static-nodes whitelist, in order: the first entry is the producer (raft id 1, the
   * genesis Miner). Updated in place with NodeRunner.updateStaticNodes as Miners come and go.
   */
  staticNodes: z.array(EnodeUrl).max(1000).default([]),
  restartPolicy: RestartPolicy.default('Always'),
  /** How long a stop waits after SIGTERM before SIGKILL. */
  podDeletionTimeoutSeconds: z.number().int().min(0).max(3600).default(10),
  /**
   * Block interval, ms (the Chain's minMineIntervalSeconds × 1000; milliseconds so tests and the
   * walkthrough can mine quickly).
   */
  mineIntervalMs: z.number().int().min(10).max(86_400_000).default(1000),
})
export type MinerAssignment = z.input<typeof MinerAssignmentSchema>
export type MinerAssignmentT = z.infer<typeof MinerAssignmentSchema>

export type MinerPhase = 'Pending' | 'Provisioning' | 'Running' | 'Deleting' | 'Failed' | 'Unknown'

export interface MinerCondition {
  type: 'PodHealthy'
  status: 'True' | 'False' | 'Unknown'
  /** CamelCase why: Healthy, Starting, HealthCheckFailed, ProcessExited, Stopped... */
  reason: string
  message?: string
  lastTransitionTime: string
}

export interface MinerAddress {
  /** InternalIP: the host; HTTP: the node's API base URL; Enode: its static-nodes entry. */
  type: 'InternalIP' | 'HTTP' | 'Enode'
  address: string
}

/** What the node half reports about one Miner (a whole snapshot each time it changes). */
export interface MinerNodeStatus {
  phase: MinerPhase
  /** The node process while one runs. */
  podRef?: { kind: 'Process'; pid: number; startedAt: string }
  addresses: MinerAddress[]
  artifacts: { imageDigest: string; genesisDigest: string }
  conditions: MinerCondition[]
  /** Processes started after the first one. */
  restartCount: number
  failureReason?: string
  failureMessage?: string
}

export type StatusReporter = (status: MinerNodeStatus) => void

/**
 * Writes the blob `digest` to `destPath` (a path that does not exist yet). The agent's pull by
 * digest (agentPullBlob) is one; tests may copy a local file. The runner verifies the sha256
 * itself afterwards, whatever this function promised.
 */
export type PullBlob = (digest: string, destPath: string, signal?: AbortSignal) => Promise<void>
