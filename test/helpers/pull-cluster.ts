/**
 * For PullCLI tests: a herd and one agent on loopback, a file pushed through the proxy, and an
 * address where nothing listens (an agent that is down).
 */
import { writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { AgentServer } from '../../lib/agent/server/index.js'
import { push } from '../../lib/cli/push.js'
import { validateConfig } from '../../lib/config/index.js'
import type { Digest, Tag } from '../../lib/core/index.js'
import type { Herd } from '../../lib/herd/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { startTestHerd } from './herd.js'

type Teardown = { teardown(fn: () => unknown): void }

export async function startHerdAndAgent(
  t: Teardown,
  dir: string,
  herdOpts: Parameters<typeof startTestHerd>[2] = {},
): Promise<{ herd: Herd; agent: AgentServer }> {
  const herd = await startTestHerd(t, dir, herdOpts)
  const agent = new AgentServer(
    validateConfig(AgentConfigSchema, {
      server: { port: 0 },
      peer: { host: '127.0.0.1', port: 0 },
      dataDir: join(dir, 'agent'),
      trackers: [herd.urls.tracker],
      buildIndex: herd.urls.buildIndex,
      stallTimeoutSeconds: 30,
    }),
    { logger: silentLogger() },
  )
  await agent.start()
  t.teardown(() => agent.stop())
  return { herd, agent }
}

/** Writes `bytes` to `dir/name` and pushes it as version v1; returns its tag and digest. */
export async function pushBytes(
  herd: Herd,
  dir: string,
  name: string,
  bytes: Buffer,
): Promise<{ tag: Tag; digest: Digest }> {
  const src = join(dir, name)
  await writeFile(src, bytes)
  const r = await push({ srcPath: src, srcHost: '10.0.0.1', dstHost: herd.urls.proxy, version: 'v1' })
  return { tag: r.tag, digest: r.digest }
}

/** host:port where nothing listens: connecting is refused at once. */
export async function deadAddress(): Promise<string> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as { port: number }
  await new Promise((r) => server.close(r))
  return `127.0.0.1:${port}`
}
