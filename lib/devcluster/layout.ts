/** Where devcluster processes listen and keep their files (docs/architecture.md §3). */
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ShoalError } from '../errors/index.js'

export interface ProcessSpec {
  name: string
  args: string[]
  /** HTTP base URL whose /readiness says the process is up. */
  readyUrl: string
  /** Every HTTP listener of the process (component → base URL); each must answer /health. */
  health: Record<string, string>
  ports: Record<string, number>
}

export interface ClusterLayout {
  workdir: string
  herd: ProcessSpec
  agents: ProcessSpec[]
}

export const HERD_BASE_PORT = 15000
export const AGENT_BASE_PORT = 16000

/** Agent N (1-based): registry 16000 + 1000·(N−1), peer +1, server +2. */
export function agentPorts(
  n: number,
  base = AGENT_BASE_PORT,
): { registry: number; peer: number; server: number } {
  const first = base + 1000 * (n - 1)
  return { registry: first, peer: first + 1, server: first + 2 }
}

/** Ports the herd uses: base (proxy) to base + 4 (build-index). */
const HERD_PORTS = 5

export function clusterLayout(
  workdir: string,
  agents: number,
  herdBase = HERD_BASE_PORT,
  agentBase = AGENT_BASE_PORT,
): ClusterLayout {
  checkPorts(agents, herdBase, agentBase)
  const url = (port: number) => `http://127.0.0.1:${port}`
  const herd: ProcessSpec = {
    name: 'herd',
    args: ['herd', '--data-dir', join(workdir, 'herd'), '--base-port', String(herdBase)],
    readyUrl: url(herdBase),
    health: {
      proxy: url(herdBase),
      origin: url(herdBase + 2),
      tracker: url(herdBase + 3),
      buildIndex: url(herdBase + 4),
    },
    ports: {
      proxy: herdBase,
      originPeer: herdBase + 1,
      origin: herdBase + 2,
      tracker: herdBase + 3,
      buildIndex: herdBase + 4,
    },
  }
  const list: ProcessSpec[] = []
  for (let i = 1; i <= agents; i++) {
    const p = agentPorts(i, agentBase)
    list.push({
      name: `agent-${i}`,
      args: [
        'agent',
        '--port',
        String(p.server),
        '--peer-port',
        String(p.peer),
        '--data-dir',
        join(workdir, `agent-${i}`),
        '--tracker',
        `127.0.0.1:${herdBase + 3}`,
        '--build-index',
        `127.0.0.1:${herdBase + 4}`,
      ],
      readyUrl: url(p.server),
      health: { agent: url(p.server) },
      ports: { peer: p.peer, server: p.server },
    })
  }
  return { workdir, herd, agents: list }
}

/**
 * The herd's ports and every agent's must be real ports and must not overlap: a mistake here
 * would otherwise show up as one process failing with EADDRINUSE in its log.
 */
export function checkPorts(agents: number, herdBase = HERD_BASE_PORT, agentBase = AGENT_BASE_PORT): void {
  if (herdBase < 1 || herdBase + HERD_PORTS - 1 > 65535)
    throw new ShoalError('USAGE', `--base-port must be between 1 and ${65536 - HERD_PORTS}, not ${herdBase}`)
  if (agents < 1) return
  const last = agentPorts(agents, agentBase).server
  if (agentBase < 1 || last > 65535)
    throw new ShoalError(
      'USAGE',
      `--agent-base-port ${agentBase} with ${agents} agents needs ports up to ${last}; the last port is 65535`,
    )
  for (let i = 1; i <= agents; i++) {
    const first = agentPorts(i, agentBase).registry
    if (first <= herdBase + HERD_PORTS - 1 && herdBase <= first + 2)
      throw new ShoalError(
        'USAGE',
        `agent-${i}'s ports ${first}-${first + 2} overlap the herd's ${herdBase}-${herdBase + HERD_PORTS - 1}; choose another --base-port or --agent-base-port`,
      )
  }
}

/** The built entry point of a binary (dist/cmd/<name>.js), found from this module's location. */
export function builtBinary(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'dist', 'cmd', `${name}.js`)
    if (existsSync(candidate)) return candidate
    const sibling = join(dir, 'cmd', `${name}.js`)
    if (existsSync(sibling)) return sibling
    dir = dirname(dir)
  }
  throw new ShoalError('UNAVAILABLE', `cannot find the built ${name} binary; run "npm run build" first`)
}
