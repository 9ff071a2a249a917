/**
 * An agent for an integration test: loopback ports chosen by the kernel, silent, no free-space
 * floor, stopped when the test ends. Point it at a herd (its tracker and build-index) or at
 * given addresses; `settings` are more agent config keys, `deps` replaces the logger, clock…
 */
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { type AgentDeps, AgentServer } from '../../lib/agent/server/index.js'
import { validateConfig } from '../../lib/config/index.js'
import type { Herd } from '../../lib/herd/index.js'
import { silentLogger } from '../../lib/log/index.js'

export interface TestAgentOptions {
  dataDir: string
  /** Where trackers and buildIndex come from unless they are given. */
  herd?: Herd
  trackers?: string[]
  buildIndex?: string
  /** More agent config (overrides the defaults above). */
  settings?: Record<string, unknown>
  deps?: Partial<AgentDeps>
}

export async function startTestAgent(
  t: { teardown(fn: () => unknown): void },
  o: TestAgentOptions,
): Promise<AgentServer> {
  const trackers = o.trackers ?? (o.herd ? [o.herd.urls.tracker] : undefined)
  const buildIndex = o.buildIndex ?? o.herd?.urls.buildIndex
  if (!trackers || !buildIndex) throw new TypeError('startTestAgent needs a herd, or trackers and buildIndex')
  const config = validateConfig(AgentConfigSchema, {
    log: { level: 'silent' },
    server: { port: 0 },
    peer: { host: '127.0.0.1', port: 0 },
    dataDir: o.dataDir,
    minFreeBytes: 0,
    trackers,
    buildIndex,
    ...o.settings,
  })
  const agent = new AgentServer(config, { logger: silentLogger(), ...o.deps })
  await agent.start()
  t.teardown(() => agent.stop())
  return agent
}
