/**
 * Build-index servers for integration tests: an origin stand-in that holds and owns every
 * digest, and build-index instances on loopback port 0 over one fs backend folder, stopped when
 * the test ends.
 */
import { join } from 'node:path'
import { FsBackend } from '../../lib/backend/fs.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { type BuildIndexServer, startBuildIndex } from '../../lib/build-index/server/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { HttpServer, sendEmpty, sendJson } from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { tempDir } from './files.js'

type Teardown = { teardown(fn: () => unknown): void }

const logger = silentLogger()

/**
 * An origin that holds every digest (HEAD 200) and owns all of them (its locations name only
 * itself); its answers come on a later tick, so concurrent puts overlap. Returns host:port.
 */
export async function fakeBlobOrigin(t: Teardown): Promise<string> {
  const server = new HttpServer({ name: 'fake-origin', logger })
  const addr = await server.start(0, '127.0.0.1')
  const self = `127.0.0.1:${addr.port}`
  server.router.get('/blobs/:digest/locations', ({ res }) => sendJson(res, 200, { locations: [self] }))
  server.router.head('/namespace/:ns/blobs/:digest', ({ res }) =>
    sendEmpty(res, 200, { 'content-length': 1 }),
  )
  t.teardown(() => server.stop())
  return self
}

export interface TestBuildIndex {
  /** The temporary folder; the backend is its `backend/`. */
  root: string
  /** The fake origin's host:port. */
  origin: string
  /** Starts one more instance on the same config and backend (stopped when the test ends). */
  start(): Promise<BuildIndexServer>
}

/**
 * A fake origin and a build-index config on loopback port 0 with it as the origin; `settings`
 * are more config keys. Nothing is started yet: `start()` starts each instance.
 */
export async function testBuildIndex(
  t: Teardown,
  settings: Record<string, unknown> = {},
  prefix = 'shoal-bi-',
): Promise<TestBuildIndex> {
  const root = await tempDir(t, prefix)
  const origin = await fakeBlobOrigin(t)
  const config = validateConfig(BuildIndexConfigSchema, {
    server: { host: '127.0.0.1', port: 0 },
    origins: [origin],
    ...settings,
  })
  const start = async () => {
    const server = await startBuildIndex(config, { logger, backend: new FsBackend(join(root, 'backend')) })
    t.teardown(() => server.stop())
    return server
  }
  return { root, origin, start }
}
