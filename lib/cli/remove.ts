/** RemoveCLI remove: retire a tag from Shoal. Files already pulled onto hosts stay. */
import { Tag } from '../core/index.js'
import { ProxyClient } from '../proxy/client/index.js'
import { clientTimeoutMs, withTimeout } from './common.js'

export async function remove(opts: { tag: string; dstHost: string; timeoutSeconds?: number }): Promise<Tag> {
  const tag = Tag.parse(opts.tag)
  const proxy = new ProxyClient(opts.dstHost, { timeoutMs: clientTimeoutMs(opts.timeoutSeconds, 30_000) })
  await withTimeout(`remove of ${tag}`, opts.timeoutSeconds, (signal) => proxy.deleteTag(tag, signal))
  return tag
}
