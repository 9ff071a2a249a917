/**
 * Starts tracker, origin (with its engine), build-index and proxy in one process, wired to
 * each other, and stops them in reverse order. This is the embedded default: local-folder
 * backend, in-memory peer store, no external services.
 */
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { BuildIndexConfigSchema } from '../build-index/config.js'
import { BuildIndexServer } from '../build-index/server/index.js'
import { deepMerge, validateConfig } from '../config/index.js'
import type { Logger } from '../log/index.js'
import { OriginConfigSchema } from '../origin/config.js'
import { ProxyConfigSchema } from '../proxy/config.js'
import { ProxyServer } from '../proxy/server/index.js'
import { TrackerConfigSchema } from '../tracker/config.js'
import { TrackerServer } from '../tracker/server/index.js'
import { HERD_PORT_OFFSETS, type HerdConfig } from './config.js'
import { type OriginNode, startOriginNode } from './origin-node.js'

export interface Herd {
  readonly urls: { proxy: string; origin: string; tracker: string; buildIndex: string }
  readonly originPeerPort: number
  readonly originNode: OriginNode
  stop(): Promise<void>
}

export async function startHerd(config: HerdConfig, deps: { logger: Logger }): Promise<Herd> {
  const ports = await allocatePorts(config.basePort)
  const host = config.advertiseHost
  const bind = config.bindHost
  const dataDir = resolve(config.dataDir)
  const addr = (port: number) => `${host}:${port}`
  const log = { level: config.log.level }
  const backend = { type: 'fs', root: join(dataDir, 'backend') }

  const trackerConfig = section(TrackerConfigSchema, 'tracker', config.tracker, {
    log,
    server: { host: bind, port: ports.tracker },
    origins: [{ peer: addr(ports.originPeer), http: addr(ports.originHttp) }],
  })
  const originConfig = section(OriginConfigSchema, 'origin', config.origin, {
    log,
    server: { host: bind, port: ports.originHttp },
    peer: { host: bind, port: ports.originPeer },
    dataDir: join(dataDir, 'origin'),
    backend,
    trackerUrl: `http://${addr(ports.tracker)}`,
    self: addr(ports.originHttp),
    buildIndex: addr(ports.buildIndex),
  })
  const buildIndexConfig = section(BuildIndexConfigSchema, 'buildIndex', config.buildIndex, {
    log,
    server: { host: bind, port: ports.buildIndex },
    origins: [addr(ports.originHttp)],
    backend,
  })
  const proxyConfig = section(ProxyConfigSchema, 'proxy', config.proxy, {
    log,
    server: { host: bind, port: ports.proxy },
    origins: [addr(ports.originHttp)],
    buildIndex: addr(ports.buildIndex),
  })

  const stack: Array<{ stop(): Promise<void> }> = []
  const stopAll = async () => {
    for (const s of stack.reverse().splice(0)) await s.stop()
  }
  try {
    const tracker = new TrackerServer(trackerConfig, { logger: deps.logger })
    await tracker.start()
    stack.push(tracker)
    const originNode = await startOriginNode(originConfig, { logger: deps.logger })
    stack.push(originNode)
    const buildIndex = new BuildIndexServer(buildIndexConfig, { logger: deps.logger })
    await buildIndex.start()
    stack.push(buildIndex)
    const proxy = new ProxyServer(proxyConfig, { logger: deps.logger })
    await proxy.start()
    stack.push(proxy)
    deps.logger.info({ ports, advertiseHost: host, dataDir }, 'herd started')
    let stopped = false
    return {
      urls: {
        proxy: `http://${addr(ports.proxy)}`,
        origin: `http://${addr(ports.originHttp)}`,
        tracker: `http://${addr(ports.tracker)}`,
        buildIndex: `http://${addr(ports.buildIndex)}`,
      },
      originPeerPort: ports.originPeer,
      originNode,
      async stop() {
        if (stopped) return
        stopped = true
        await stopAll()
        deps.logger.info('herd stopped')
      },
    }
  } catch (err) {
    await stopAll()
    throw err
  }
}

function section<T>(
  schema: import('../config/index.js').ZodType<T>,
  name: string,
  user: Record<string, unknown>,
  wiring: Record<string, unknown>,
): T {
  return validateConfig(schema, deepMerge(wiring, user), `herd config section "${name}"`)
}

type PortName = keyof typeof HERD_PORT_OFFSETS

/** Ports counted from basePort; with basePort 0 each is a currently free port (tests). */
async function allocatePorts(basePort: number): Promise<Record<PortName, number>> {
  const out = {} as Record<PortName, number>
  for (const [name, offset] of Object.entries(HERD_PORT_OFFSETS) as Array<[PortName, number]>) {
    out[name] = basePort === 0 ? await freePort() : basePort + offset
  }
  return out
}

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolvePort(port))
    })
  })
}
