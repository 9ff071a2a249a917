/** A test kind (Widget, with spec.host selectable), a second kind, and a watch reader with a deadline. */
import { type KindDefinition, KindRegistry } from '../../lib/apiserver/registry.js'
import type { ResourceInput, WatchEvent } from '../../lib/apiserver/types.js'
import { z } from '../../lib/config/index.js'

export const Widget: KindDefinition = {
  group: 'test.shoal.io',
  version: 'v1',
  kind: 'Widget',
  plural: 'widgets',
  spec: z.strictObject({ host: z.string().min(1), size: z.number().int().min(0).default(0) }),
  status: z.strictObject({ phase: z.enum(['Pending', 'Running', 'Done']), note: z.string().optional() }),
  selectableFields: { 'spec.host': (o) => (o.spec as { host?: string }).host },
}
export const Gadget: KindDefinition = { ...Widget, kind: 'Gadget', plural: 'gadgets', selectableFields: {} }
new KindRegistry().register(Widget).register(Gadget) // the definitions are valid

export function widget(
  name: string,
  host = 'h1',
  labels: Record<string, string> = {},
  extra: Partial<ResourceInput['metadata']> = {},
): ResourceInput {
  return { metadata: { name, labels, ...extra }, spec: { host } }
}

/** Reads `n` events (BOOKMARKs skipped unless asked), failing after a deadline instead of hanging. */
export async function take(
  it: AsyncIterable<WatchEvent>,
  n: number,
  opts: { bookmarks?: boolean; ms?: number } = {},
): Promise<WatchEvent[]> {
  const out: WatchEvent[] = []
  const iter = it[Symbol.asyncIterator]()
  const deadline = Date.now() + (opts.ms ?? 10_000)
  while (out.length < n) {
    const left = deadline - Date.now()
    if (left <= 0)
      throw new Error(
        `only ${out.length} of ${n} events before the deadline: ${JSON.stringify(out.map((e) => e.type))}`,
      )
    let timer: NodeJS.Timeout | undefined
    const r = await Promise.race([
      iter.next(),
      new Promise<'timeout'>((res) => {
        timer = setTimeout(() => res('timeout'), left)
      }),
    ])
    clearTimeout(timer)
    if (r === 'timeout') continue
    if (r.done) throw new Error(`the watch ended after ${out.length} of ${n} events`)
    if (r.value.type === 'BOOKMARK' && !opts.bookmarks) continue
    out.push(r.value)
  }
  return out
}
