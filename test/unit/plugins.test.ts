/**
 * The plugin seam: only configured plugins are imported, a slice is checked by the plugin's own
 * strict schema, an unknown name fails before anything starts, kinds are registered during
 * setup, and the plugins' parts start after setup and stop in reverse order.
 */
import t from 'tap'
import { KindRegistry } from '../../lib/apiserver/registry.js'
import { z } from '../../lib/config/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { createRegistry } from '../../lib/metrics/index.js'
import { PLUGIN_CATALOG } from '../../lib/plugins/catalog.js'
import { PluginHost, type ShoalPlugin } from '../../lib/plugins/index.js'

function rig(config: Record<string, Record<string, unknown>>) {
  const imported: string[] = []
  const log: string[] = []
  const plugin = (name: string): ShoalPlugin<{ level: number }> => ({
    name,
    configSchema: z.strictObject({ level: z.number().default(1) }),
    setup(ctx) {
      log.push(`setup ${name} level=${ctx.config.level}`)
      // As real plugins do: a registry kept across a restart has the kind already.
      if (!ctx.registry.kinds().some((k) => k.group === `${name}.io`))
        ctx.registry.register({
          group: `${name}.io`,
          version: 'v1',
          kind: 'Thing',
          plural: 'things',
          spec: z.unknown(),
        })
      return [
        {
          start: async () => void log.push(`start ${name}`),
          stop: async () => void log.push(`stop ${name}`),
        },
      ]
    },
  })
  const catalog = Object.fromEntries(
    ['one', 'two', 'unused'].map((n) => [
      n,
      {
        herd: async () => {
          imported.push(n)
          return plugin(n) as ShoalPlugin<unknown>
        },
      },
    ]),
  )
  const registry = new KindRegistry()
  const host = new PluginHost(config, {
    daemon: 'herd',
    logger: silentLogger(),
    metrics: createRegistry('test'),
    registry,
    services: () => ({
      router: undefined,
      store: undefined,
      api: undefined,
      proxyUrl: undefined,
      buildIndexUrl: undefined,
    }),
    catalog,
  })
  return { host, imported, log, registry }
}

t.test('configured plugins are imported, set up, started and stopped in order', async (t) => {
  const { host, imported, log, registry } = rig({ one: { level: 3 }, two: {} })
  await host.setupPart.start()
  t.same(imported, ['one', 'two'], 'the unconfigured plugin is never imported')
  t.same(
    registry.kinds().map((k) => k.group),
    ['one.io', 'two.io'],
    'kinds registered during setup',
  )
  const run = typeof host.runPart === 'function' ? await host.runPart() : host.runPart
  await run.start()
  await run.stop()
  t.same(log, ['setup one level=3', 'setup two level=1', 'start one', 'start two', 'stop two', 'stop one'])
  t.same(host.loaded, ['one', 'two'])
})

t.test('an empty plugins section costs nothing', async (t) => {
  const { host, imported } = rig({})
  t.equal(host.empty, true)
  await host.setupPart.start()
  t.same(imported, [])
})

t.test('an unknown plugin fails at once; a bad slice fails at setup naming it', async (t) => {
  t.throws(() => rig({ nope: {} }), { code: 'CONFIG_INVALID', message: /no plugin "nope"/ })
  const { host } = rig({ one: { level: 'high' } })
  const err = await host.setupPart.start().catch((e) => e)
  t.ok(isShoalError(err, 'CONFIG_INVALID'), String(err))
  t.match(err.message, /plugins\.one/)
})

t.test('the built-in catalog has the onex control half for the herd only', async (t) => {
  t.ok(PLUGIN_CATALOG.onex?.herd)
  const onex = await PLUGIN_CATALOG.onex?.herd?.()
  t.equal(onex?.name, 'onex')
  t.ok(onex?.configSchema.safeParse({}).success, 'an empty slice is a working config')
  t.notOk(onex?.configSchema.safeParse({ bogus: 1 }).success, 'strict')
})

t.test('a daemon started again sets its plugins up afresh (no parts twice)', async (t) => {
  const { host, log } = rig({ one: {} })
  for (let i = 0; i < 2; i++) {
    await host.setupPart.start()
    const run = typeof host.runPart === 'function' ? await host.runPart() : host.runPart
    await run.start()
    await run.stop()
  }
  t.same(
    log.filter((l) => l.startsWith('start')),
    ['start one', 'start one'],
  )
  t.same(host.loaded, ['one'])
})
