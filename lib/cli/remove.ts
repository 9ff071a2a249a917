/** RemoveCLI remove: retire a tag from Shoal. Files already pulled onto hosts stay. */
import { Tag } from '../core/index.js'
import { ProxyClient } from '../proxy/client/index.js'

export async function remove(opts: { tag: string; dstHost: string; timeoutSeconds?: number }): Promise<Tag> {
  const tag = Tag.parse(opts.tag)
  const signal = opts.timeoutSeconds ? AbortSignal.timeout(opts.timeoutSeconds * 1000) : undefined
  await new ProxyClient(opts.dstHost).deleteTag(tag, signal)
  return tag
}
