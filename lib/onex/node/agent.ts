/**
 * Where the agent meets the OneX node half: a PullBlob that pulls by digest through the local
 * agent (the swarm, PullCLI's own fetch path: the agent downloads the blob from peers and origins,
 * verifies it, and the bytes are copied or streamed here and checked against the digest again),
 * and runMinerAssignment, which starts a NodeRunner for one Miner scheduled on this host.
 * The control half (lib/onex/control) watches Miners with spec.hostName = this host and calls
 * these; it is wired by the plugin seam, not here.
 */
import { AgentClient } from '../../agent/client/index.js'
import { fetchBlob } from '../../cli/fetch.js'
import { DEFAULT_NAMESPACE, Digest } from '../../core/index.js'
import type { Logger } from '../../log/index.js'
import type { MinerAssignment, PullBlob, StatusReporter } from './assignment.js'
import type { NodeRunnerConfig } from './config.js'
import { NodeRunner } from './runner.js'

/**
 * A PullBlob through the agent at `agentUrl` (http://host:port of its local API), for blobs of
 * `namespace` (where the control half pushed the image and genesis tags).
 */
export function agentPullBlob(
  agentUrl: string,
  opts: { namespace?: string; timeoutMs?: number } = {},
): PullBlob {
  const agent = new AgentClient(agentUrl, { timeoutMs: opts.timeoutMs ?? 10 * 60_000 })
  const ns = opts.namespace ?? DEFAULT_NAMESPACE
  return async (digest, destPath, signal) => {
    await fetchBlob(agent, ns, Digest.parse(digest), destPath, signal ? { signal } : {})
  }
}

/** Starts one Miner on this host; resolves once its process listens (then it runs until stop()). */
export async function runMinerAssignment(
  assignment: MinerAssignment,
  deps: { config: NodeRunnerConfig; pullBlob: PullBlob; report?: StatusReporter; logger?: Logger },
  signal?: AbortSignal,
): Promise<NodeRunner> {
  const runner = new NodeRunner(assignment, deps)
  await runner.start(signal)
  return runner
}
