/**
 * The onex plugin's control half (docs/onex.md), loaded by the herd when its config names
 * `plugins: { onex: {...} }`: registers OneX's kinds and runs the controller on the herd's
 * resource store once the proxy and build-index are up.
 */
import { ShoalError } from '../../errors/index.js'
import type { ShoalPlugin } from '../../plugins/types.js'
import { type OnexControlConfig, OnexControlConfigSchema } from './config.js'
import { OnexController } from './controller.js'
import { registerOnexKinds } from './register.js'

export const onexControlPlugin: ShoalPlugin<OnexControlConfig> = {
  name: 'onex',
  configSchema: OnexControlConfigSchema,
  setup(ctx) {
    registerOnexKinds(ctx.registry)
    return [
      () => {
        const s = ctx.services()
        if (!s.store || !s.proxyUrl || !s.buildIndexUrl)
          throw new ShoalError(
            'CONFIG_INVALID',
            'plugin onex needs the resource API (apiserver.enabled), the proxy and the build-index',
          )
        return new OnexController({
          store: s.store,
          config: ctx.config,
          logger: ctx.logger,
          proxyUrl: s.proxyUrl,
          buildIndexUrl: s.buildIndexUrl,
          metrics: ctx.metrics,
        })
      },
    ]
  },
}
