/**
 * Loads the plugins a daemon's config names (docs/plugins.md). The daemon gives the host two
 * parts: `setupPart` goes before its resource API (it imports each named plugin, validates its
 * slice and lets it register kinds), `runPart` after its own services (it starts every
 * plugin's parts, and stops them first when the daemon stops).
 */
import type { KindRegistry } from '../apiserver/registry.js'
import { validateConfig, z } from '../config/index.js'
import { ShoalError } from '../errors/index.js'
import { type Part, type Service, ServiceGroup } from '../lifecycle/index.js'
import type { Logger } from '../log/index.js'
import type { Registry } from '../metrics/index.js'
import { PLUGIN_CATALOG } from './catalog.js'
import type { DaemonKind, DaemonServices, PluginLoader, ShoalPlugin } from './types.js'

export type { DaemonKind, DaemonServices, PluginContext, ShoalPlugin } from './types.js'

/** The daemon config's `plugins` section: plugin name → its config slice (checked by the plugin). */
export const PluginsConfig = z.record(z.string(), z.record(z.string(), z.unknown())).default({})
export type PluginsConfigT = z.infer<typeof PluginsConfig>

export interface PluginHostDeps {
  daemon: DaemonKind
  logger: Logger
  metrics: Registry
  registry: KindRegistry
  services: () => DaemonServices
  /** Other plugins than the built-in catalog (tests). */
  catalog?: Record<string, PluginLoader>
}

export class PluginHost {
  private parts: Part[] = []
  /** Names of the plugins set up, in config order. */
  readonly loaded: string[] = []

  constructor(
    private readonly config: PluginsConfigT,
    private readonly deps: PluginHostDeps,
  ) {
    // Unknown names fail at once, before anything starts.
    for (const name of Object.keys(config)) this.loader(name)
  }

  /** True when the config names no plugin: the daemon may skip both parts. */
  get empty(): boolean {
    return Object.keys(this.config).length === 0
  }

  private loader(name: string): () => Promise<ShoalPlugin<unknown>> {
    const catalog = this.deps.catalog ?? PLUGIN_CATALOG
    const entry = Object.hasOwn(catalog, name) ? catalog[name] : undefined
    if (!entry)
      throw new ShoalError(
        'CONFIG_INVALID',
        `plugins: no plugin "${name.slice(0, 80)}" (known: ${Object.keys(catalog).join(', ') || 'none'})`,
      )
    const load = entry[this.deps.daemon]
    if (!load)
      throw new ShoalError(
        'CONFIG_INVALID',
        `plugins: "${name}" has no part that runs in the ${this.deps.daemon}`,
      )
    return load
  }

  /** Before the resource API: import, validate, register kinds. */
  readonly setupPart: Service = {
    start: async () => {
      // A daemon started again (stop, start) sets its plugins up afresh.
      this.parts = []
      this.loaded.length = 0
      for (const [name, slice] of Object.entries(this.config)) {
        const plugin = await this.loader(name)()
        const config = validateConfig(plugin.configSchema, slice, `plugins.${name}`)
        const logger = this.deps.logger.child({ plugin: name })
        const parts = await plugin.setup({
          daemon: this.deps.daemon,
          config,
          logger,
          metrics: this.deps.metrics,
          registry: this.deps.registry,
          services: this.deps.services,
        })
        this.parts.push(new ServiceGroup(`plugin ${name}`, parts))
        this.loaded.push(name)
        logger.info({ parts: parts.length }, 'plugin loaded')
      }
    },
    stop: async () => {},
  }

  /** After the daemon's own services: the plugins' parts. */
  readonly runPart: Part = () => new ServiceGroup('plugins', this.parts)
}
