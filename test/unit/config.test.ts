import { mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { defaultConfigDir, loadConfig, validateConfig } from '../../lib/config/index.js'
import { HerdConfigSchema } from '../../lib/herd/config.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { ProxyConfigSchema } from '../../lib/proxy/config.js'
import { TrackerConfigSchema } from '../../lib/tracker/config.js'

async function configTree(files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'shoal-config-'))
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(root, name, '..'), { recursive: true })
    await writeFile(join(root, name), text)
  }
  return root
}

t.test('defaults make an empty config valid', async (t) => {
  const root = await configTree({})
  const c = loadConfig(AgentConfigSchema, { component: 'agent', configDir: root })
  t.equal(c.server.host, '127.0.0.1', 'agent API binds loopback by default')
  t.equal(c.server.port, 16002)
  t.equal(c.peer.port, 16001)
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.server), 'config is frozen')
})

t.test('environment file extends base; flags override both', async (t) => {
  const root = await configTree({
    'agent/base.yaml': 'server:\n  port: 1000\npeer:\n  port: 1001\n',
    'agent/staging.yaml': 'extends: base.yaml\nserver:\n  port: 2000\n',
  })
  const c = loadConfig(AgentConfigSchema, {
    component: 'agent',
    configDir: root,
    env: 'staging',
    overrides: { peer: { port: 3001 }, dataDir: undefined },
  })
  t.equal(c.server.port, 2000, 'environment beats base')
  t.equal(c.peer.port, 3001, 'flags beat files')
  t.equal(c.dataDir, './data/agent', 'undefined flags leave defaults alone')
})

t.test('a misspelt environment is an error listing the known ones, not the base defaults', async (t) => {
  const root = await configTree({ 'agent/base.yaml': '', 'agent/production.yaml': 'extends: base.yaml\n' })
  t.throws(() => loadConfig(AgentConfigSchema, { component: 'agent', configDir: root, env: 'prodution' }), {
    code: 'CONFIG_INVALID',
    message: /no config for environment "prodution" of agent: .* \(known: base, production\)/,
  })
  t.doesNotThrow(
    () => loadConfig(AgentConfigSchema, { component: 'agent', configDir: root }),
    'no env given: development, else base',
  )
})

t.test('an unknown or misspelt key stops start-up naming it', async (t) => {
  const root = await configTree({ 'agent/base.yaml': 'server:\n  prot: 1000\ndataDri: /x\n' })
  t.throws(() => loadConfig(AgentConfigSchema, { component: 'agent', configDir: root }), {
    code: 'CONFIG_INVALID',
    message:
      /unknown key "server\.prot".*unknown key "dataDri"|unknown key "dataDri".*unknown key "server\.prot"/,
  })
})

t.test('wrong types and broken files are named too', async (t) => {
  const root = await configTree({
    'agent/base.yaml': 'server:\n  port: "not a number"\n',
    'agent/broken.yaml': 'server: [1, 2\n',
    'agent/loop.yaml': 'extends: loop.yaml\n',
    'agent/missing.yaml': 'extends: nowhere.yaml\n',
  })
  t.throws(() => loadConfig(AgentConfigSchema, { component: 'agent', configDir: root }), {
    code: 'CONFIG_INVALID',
    message: /"server\.port"/,
  })
  t.throws(() => loadConfig(AgentConfigSchema, { component: 'agent', configDir: root, env: 'broken' }), {
    code: 'CONFIG_INVALID',
    message: /cannot read config/,
  })
  t.throws(() => loadConfig(AgentConfigSchema, { component: 'agent', configDir: root, env: 'loop' }), {
    code: 'CONFIG_INVALID',
    message: /loops/,
  })
  t.throws(() => loadConfig(AgentConfigSchema, { component: 'agent', configDir: root, env: 'missing' }), {
    code: 'CONFIG_INVALID',
    message: /does not exist/,
  })
  t.throws(() => loadConfig(AgentConfigSchema, { component: 'agent', file: join(root, 'nope.yaml') }), {
    code: 'CONFIG_INVALID',
    message: /not found/,
  })
})

t.test('every shipped config file is valid for its component', async (t) => {
  const schemas = {
    agent: AgentConfigSchema,
    origin: OriginConfigSchema,
    tracker: TrackerConfigSchema,
    'build-index': BuildIndexConfigSchema,
    proxy: ProxyConfigSchema,
    herd: HerdConfigSchema,
  }
  const root = defaultConfigDir()
  for (const [component, schema] of Object.entries(schemas)) {
    const files = (await readdir(join(root, component))).filter((f) => f.endsWith('.yaml'))
    t.ok(files.includes('base.yaml'), `${component} has a base.yaml`)
    for (const file of files) {
      const load = () =>
        loadConfig(schema as typeof AgentConfigSchema, { component, file: join(root, component, file) })
      t.doesNotThrow(load, `${component}/${file}`)
    }
  }
})

t.test(
  'agent and origin: the engine tuning under peer, strict, absent keys left to the engine',
  async (t) => {
    const agent = validateConfig(AgentConfigSchema, {
      peer: { port: 0, blockSize: 65536, uploadSlots: 8, hashOnWorker: true },
    })
    t.match(agent.peer, {
      host: '0.0.0.0',
      port: 0,
      blockSize: 65536,
      uploadSlots: 8,
    })
    t.equal(agent.peer.maxConnectionsPerTorrent, undefined, 'the engine default (tuning.ts) applies')
    t.equal(
      validateConfig(AgentConfigSchema, {}).peer.optimisticUnchokeMs,
      undefined,
      'engine default applies',
    )
    const origin = validateConfig(OriginConfigSchema, { peer: { stallStrikes: 5, pipelineQueueMs: 50 } })
    t.match(origin.peer, { host: '0.0.0.0', port: 15001, stallStrikes: 5, pipelineQueueMs: 50 })
    t.equal(origin.peer.maxConnectionsPerTorrent, undefined)
    for (const schema of [AgentConfigSchema, OriginConfigSchema] as const) {
      t.throws(() => validateConfig(schema as typeof AgentConfigSchema, { peer: { uploadSlot: 8 } }), {
        code: 'CONFIG_INVALID',
        message: /unknown key "peer\.uploadSlot"/,
      })
      t.throws(() => validateConfig(schema as typeof AgentConfigSchema, { peer: { blockSize: 1000 } }), {
        code: 'CONFIG_INVALID',
        message: /"peer\.blockSize"/,
      })
    }
    // The herd passes its origin section through the origin's schema.
    const herd = validateConfig(HerdConfigSchema, {
      origin: { peer: { uploadSlots: 4 }, bandwidth: { egressBytesPerSec: '8MiB' } },
    })
    t.same(herd.origin, { peer: { uploadSlots: 4 }, bandwidth: { egressBytesPerSec: '8MiB' } })
  },
)
