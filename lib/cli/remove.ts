/** RemoveCLI remove: retire a tag from Shoal. Files already pulled onto hosts stay. */
import { Tag } from '../core/index.js'
import { ProxyClient } from '../proxy/client/index.js'
import { clientTimeoutMs, withTimeout } from './common.js'

export async function remove(opts: {
  tag: Tag | string
  dstHost: string
  timeoutSeconds?: number
}): Promise<Tag> {
  const tag = typeof opts.tag === 'string' ? Tag.parse(opts.tag) : opts.tag
  const proxy = new ProxyClient(opts.dstHost, { timeoutMs: clientTimeoutMs(opts.timeoutSeconds, 30_000) })
  // One request: its whole time is time without progress, so the total deadline is the same.
  await withTimeout(`remove of ${tag}`, opts.timeoutSeconds, (signal) => proxy.deleteTag(tag, signal))
  return tag
}
