/**
 * The plugins Shoal knows, by the name a config uses. Each entry imports its module lazily:
 * nothing of a plugin is loaded unless a daemon's config names it.
 */
import type { PluginLoader } from './types.js'

export const PLUGIN_CATALOG: Record<string, PluginLoader> = {
  onex: {
    herd: async () => (await import('../onex/control/plugin.js')).onexControlPlugin as never,
  },
}
