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

export function clusterLayout(
  workdir: string,
  agents: number,
  herdBase = HERD_BASE_PORT,
  agentBase = AGENT_BASE_PORT,
): ClusterLayout {
  const herd: ProcessSpec = {
    name: 'herd',
    args: ['herd', '--data-dir', join(workdir, 'herd'), '--base-port', String(herdBase)],
    readyUrl: `http://127.0.0.1:${herdBase}`,
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
      readyUrl: `http://127.0.0.1:${p.server}`,
      ports: { peer: p.peer, server: p.server },
    })
  }
  return { workdir, herd, agents: list }
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
