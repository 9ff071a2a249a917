/** Where devcluster processes listen and keep their files (docs/architecture.md §3). */
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { defaultConfigDir } from '../config/index.js'
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
  /** The S3-compatible server (--s3), started first. */
  s3?: ProcessSpec
  herd: ProcessSpec
  /** Origins 2..N (the herd holds origin 1), started after the herd. */
  origins: ProcessSpec[]
  agents: ProcessSpec[]
}

export const HERD_BASE_PORT = 15000
export const AGENT_BASE_PORT = 16000
/** The S3-compatible server listens this far below the herd's base port: 14000 by default. */
export const S3_PORT_OFFSET = -1000
/** Origin N (N >= 2) uses the herd's origin ports shifted by 10·(N−1): 15011/15012, 15021/15022... */
export const ORIGIN_PORT_STEP = 10
/** The bucket the devcluster's S3 server creates and the origins write to. */
export const S3_BUCKET = 'shoal-devcluster'

/** Origin N (1-based; 1 is the herd's): BitTorrent peer and HTTP ports. */
export function originPorts(n: number, herdBase = HERD_BASE_PORT): { peer: number; http: number } {
  const shift = ORIGIN_PORT_STEP * (n - 1)
  return { peer: herdBase + 1 + shift, http: herdBase + 2 + shift }
}

/** Agent N (1-based): registry 16000 + 1000·(N−1), peer +1, server +2. */
export function agentPorts(
  n: number,
  base = AGENT_BASE_PORT,
): { registry: number; peer: number; server: number } {
  const first = base + 1000 * (n - 1)
  return { registry: first, peer: first + 1, server: first + 2 }
}

/** Ports the herd uses: base (proxy) to base + 6 (the resource API; base + 5 is kept for the proxy's admin port). */
export const HERD_PORTS = 7

export interface LayoutOptions {
  /** Origins in the ring: the herd's plus N−1 `shoal origin` processes (default 1). */
  origins?: number
  /** Run an S3-compatible server and make it every origin's backend. */
  s3?: boolean
  /** Owners per blob (hashring.replicas); default min(origins, 3), as in production. */
  replicas?: number
  /** Folder of the package's config tree, which generated config files extend. */
  configDir?: string
  /**
   * Agents take distribution jobs (default true): each gets a config file naming it
   * `agent-N` (its jobs hostName), the herd's resource API and its own root folder.
   */
  jobs?: boolean
}

/** The folder agent `name`'s jobs may write into and read from: WORKDIR/roots/NAME. */
export function agentJobsRoot(workdir: string, name: string): string {
  return join(workdir, 'roots', name)
}

/** devcluster-generated config files: path → the YAML document's object. */
export type ConfigFiles = Record<string, Record<string, unknown>>

export function clusterLayout(
  workdir: string,
  agents: number,
  herdBase = HERD_BASE_PORT,
  agentBase = AGENT_BASE_PORT,
  opts: LayoutOptions = {},
): ClusterLayout & { configs: ConfigFiles } {
  const origins = opts.origins ?? 1
  checkPorts(agents, herdBase, agentBase, { origins, s3: opts.s3 })
  const replicas = opts.replicas ?? Math.min(origins, 3)
  if (replicas < 1 || replicas > origins)
    throw new ShoalError(
      'USAGE',
      `--replicas must be between 1 and the number of origins (${origins}), not ${replicas}`,
    )
  const url = (port: number) => `http://127.0.0.1:${port}`
  const configs: ConfigFiles = {}
  // The plain cluster (one origin, its folder backend) runs on the packaged config alone.
  const generated = origins > 1 || opts.s3 === true
  const configFile = (name: string) => join(workdir, 'config', `${name}.yaml`)
  const herdArgs = ['herd', '--data-dir', join(workdir, 'herd'), '--base-port', String(herdBase)]
  if (generated) herdArgs.push('--config', configFile('herd'))
  const herd: ProcessSpec = {
    name: 'herd',
    args: herdArgs,
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
  let s3: ProcessSpec | undefined
  const s3Port = herdBase + S3_PORT_OFFSET
  if (opts.s3) {
    s3 = {
      name: 's3',
      args: [
        'devcluster',
        's3-server',
        '--port',
        String(s3Port),
        '--directory',
        join(workdir, 's3'),
        '--bucket',
        S3_BUCKET,
      ],
      readyUrl: url(s3Port),
      health: { s3: url(s3Port) },
      ports: { s3: s3Port },
    }
  }
  // Every origin of the ring, in the order of their numbers: the herd's is origin 1.
  const ring = Array.from({ length: origins }, (_, i) => originPorts(i + 1, herdBase))
  const nodes = ring.map((p) => `127.0.0.1:${p.http}`)
  // Without S3 every origin shares the herd's backend folder: one machine, one durable copy.
  const backend = opts.s3
    ? {
        type: 's3',
        bucket: S3_BUCKET,
        endpoint: url(s3Port),
        // s3rver's fixed credentials (it checks them); a local throw-away server only.
        credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      }
    : { type: 'fs', root: join(workdir, 'herd', 'backend') }
  const hashring = { nodes, replicas }
  const list: ProcessSpec[] = []
  for (let n = 2; n <= origins; n++) {
    const p = originPorts(n, herdBase)
    const name = `origin-${n}`
    configs[configFile(name)] = {
      extends: join(opts.configDir ?? defaultConfigDir(), 'origin', 'development.yaml'),
      log: { level: 'info' },
      server: { port: p.http },
      peer: { port: p.peer },
      dataDir: join(workdir, name),
      backend,
      trackerUrl: url(herdBase + 3),
      buildIndex: `127.0.0.1:${herdBase + 4}`,
      self: `127.0.0.1:${p.http}`,
      hashring,
    }
    list.push({
      name,
      args: ['origin', '--config', configFile(name)],
      readyUrl: url(p.http),
      health: { origin: url(p.http) },
      ports: { originPeer: p.peer, origin: p.http },
    })
  }
  if (generated) {
    configs[configFile('herd')] = {
      extends: join(opts.configDir ?? defaultConfigDir(), 'herd', 'development.yaml'),
      origin: { hashring, ...(opts.s3 ? { backend } : {}) },
      tracker: { origins: ring.map((p) => ({ http: `127.0.0.1:${p.http}`, peer: `127.0.0.1:${p.peer}` })) },
      buildIndex: { origins: nodes },
      proxy: { origins: nodes },
    }
  }
  const agentList: ProcessSpec[] = []
  for (let i = 1; i <= agents; i++) {
    const p = agentPorts(i, agentBase)
    const name = `agent-${i}`
    const jobsConfig: string[] = []
    if (opts.jobs !== false) {
      configs[configFile(name)] = {
        extends: join(opts.configDir ?? defaultConfigDir(), 'agent', 'development.yaml'),
        hostName: name,
        jobs: {
          apiserver: `127.0.0.1:${herdBase + 6}`,
          roots: [agentJobsRoot(workdir, name)],
          proxy: `127.0.0.1:${herdBase}`,
        },
      }
      jobsConfig.push('--config', configFile(name))
    }
    agentList.push({
      name,
      args: [
        'agent',
        ...jobsConfig,
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
  return { workdir, ...(s3 ? { s3 } : {}), herd, origins: list, agents: agentList, configs }
}

/**
 * Every port of the cluster must be a real port and belong to one process only: a mistake here
 * would otherwise show up as one process failing with EADDRINUSE in its log.
 */
export function checkPorts(
  agents: number,
  herdBase = HERD_BASE_PORT,
  agentBase = AGENT_BASE_PORT,
  opts: { origins?: number; s3?: boolean } = {},
): void {
  if (herdBase < 1 || herdBase + HERD_PORTS - 1 > 65535)
    throw new ShoalError('USAGE', `--base-port must be between 1 and ${65536 - HERD_PORTS}, not ${herdBase}`)
  const origins = opts.origins ?? 1
  if (origins < 1) throw new ShoalError('USAGE', `--origins must be at least 1, not ${origins}`)
  // Ranges other processes hold: [name, first, last].
  const taken: [string, number, number][] = [['the herd', herdBase, herdBase + HERD_PORTS - 1]]
  for (let n = 2; n <= origins; n++) {
    const p = originPorts(n, herdBase)
    if (p.http > 65535)
      throw new ShoalError(
        'USAGE',
        `--base-port ${herdBase} with ${origins} origins needs ports up to ${p.http}; the last port is 65535`,
      )
    taken.push([`origin-${n}`, p.peer, p.http])
  }
  if (opts.s3) {
    const port = herdBase + S3_PORT_OFFSET
    if (port < 1)
      throw new ShoalError(
        'USAGE',
        `--s3 listens on --base-port − 1000, so --base-port must be above 1000, not ${herdBase}`,
      )
    taken.push(['the S3 server', port, port])
  }
  for (const [i, a] of taken.entries())
    for (const b of taken.slice(i + 1))
      if (a[1] <= b[2] && b[1] <= a[2])
        throw new ShoalError(
          'USAGE',
          `${b[0]}'s ports ${b[1]}-${b[2]} overlap ${a[0]}'s ${a[1]}-${a[2]}; choose another --base-port`,
        )
  if (agents < 1) return
  const last = agentPorts(agents, agentBase).server
  if (agentBase < 1 || last > 65535)
    throw new ShoalError(
      'USAGE',
      `--agent-base-port ${agentBase} with ${agents} agents needs ports up to ${last}; the last port is 65535`,
    )
  for (let i = 1; i <= agents; i++) {
    const first = agentPorts(i, agentBase).registry
    for (const [name, lo, hi] of taken)
      if (first <= hi && lo <= first + 2)
        throw new ShoalError(
          'USAGE',
          `agent-${i}'s ports ${first}-${first + 2} overlap ${name === 'the herd' ? "the herd's" : `${name}'s`} ${lo}-${hi}; choose another --base-port or --agent-base-port`,
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
