/**
 * The plugin seam (docs/plugins.md): what a plugin is and what a daemon hands it. A plugin is
 * loaded only when the daemon's config names it (`plugins: { <name>: {...} }`); its module is
 * imported then and not before, so a plugin that is not configured costs nothing.
 */
import type { KindRegistry } from '../apiserver/registry.js'
import type { ResourceStore } from '../apiserver/store/types.js'
import type { ZodType } from '../config/index.js'
import type { Router } from '../http/index.js'
import type { Part } from '../lifecycle/index.js'
import type { Logger } from '../log/index.js'
import type { Registry } from '../metrics/index.js'

/** The daemons that load plugins. */
export type DaemonKind = 'herd' | 'agent'

/**
 * The daemon's running services, as a plugin's parts see them once they start (the daemon's own
 * parts are up by then: bound ports, the resource API serving).
 */
export interface DaemonServices {
  /** The resource API's router (routes mounted here are served next to /apis). */
  router: Router | undefined
  /** The resource store, for in-process reads and writes. */
  store: ResourceStore | undefined
  /** The resource API over loopback, with the daemon's in-process token. */
  api: { url: string; token: string } | undefined
  /** Base URLs of the herd's proxy (pushes) and build-index (tag lookups). */
  proxyUrl: string | undefined
  buildIndexUrl: string | undefined
}

export interface PluginContext<Config> {
  daemon: DaemonKind
  /** The plugin's config slice, parsed by its own strict schema (defaults applied). */
  config: Config
  /** A child logger named after the plugin. */
  logger: Logger
  /** The daemon's metrics registry (its /metrics). */
  metrics: Registry
  /** Kinds are registered here during setup, before the resource API serves. */
  registry: KindRegistry
  /** The running services: call it inside a part's start, not during setup. */
  services(): DaemonServices
}

export interface ShoalPlugin<Config = unknown> {
  name: string
  /** Strict schema of the plugin's config slice; `{}` must parse (defaults that work). */
  configSchema: ZodType<Config>
  /**
   * Registers kinds (synchronously into ctx.registry) and returns the plugin's parts: routes and
   * background loops as lifecycle Services. They start after the daemon's own services, in
   * order, and stop before them, in reverse order.
   */
  setup(ctx: PluginContext<Config>): Part[] | Promise<Part[]>
}

/** A catalog entry: how to import a plugin's half for a daemon (undefined: none for it). */
export type PluginLoader = Partial<Record<DaemonKind, () => Promise<ShoalPlugin<unknown>>>>
