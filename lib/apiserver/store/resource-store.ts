/**
 * The ResourceStore over any StorageEngine: the write rules of semantics.ts, optimistic
 * concurrency (read, compute, compare-and-set; an unconditional write that lost a race is
 * recomputed on the new state, a conditional one answers CONFLICT), paging, and watches that
 * read the engine's ordered history with a cursor (so a watcher never misses or repeats an
 * event, and a slow consumer only falls behind: it is never buffered for).
 */
import { ShoalError } from '../../errors/index.js'
import { Lifecycle } from '../../lifecycle/index.js'
import type { KindDefinition } from '../registry.js'
import { matches, type Selector } from '../selectors.js'
import {
  apiVersionOf,
  collectionKey,
  type Resource,
  type ResourceInput,
  type ResourceList,
  type WatchEvent,
} from '../types.js'
import { invalid } from '../validation.js'
import {
  isConditional,
  mergePatch,
  PreconditionFailed,
  prepareCreate,
  prepareStatus,
  prepareUpdate,
  stalePrecondition,
} from './semantics.js'
import type {
  DeleteResult,
  ListOptions,
  Preconditions,
  ResourceStore,
  StorageEngine,
  StoredEvent,
  WatchOptions,
} from './types.js'

/** An unconditional write that keeps losing races gives up after this many tries. */
const MAX_RETRIES = 16
const WATCH_BATCH = 256
const MAX_CONTINUE_CHARS = 1024

export class EngineResourceStore implements ResourceStore {
  private readonly life: Lifecycle

  constructor(
    readonly name: string,
    private readonly engine: StorageEngine,
    private readonly clock: () => Date = () => new Date(),
  ) {
    this.life = new Lifecycle(name, { start: () => engine.open(), stop: () => engine.close() })
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal)
  }
  stop(): Promise<void> {
    return this.life.stop()
  }

  private ready(): void {
    if (!this.life.running) throw new ShoalError('UNAVAILABLE', `${this.name} is not started`)
  }

  async create(def: KindDefinition, namespace: string, input: ResourceInput): Promise<Resource> {
    this.ready()
    const obj = prepareCreate(def, namespace, input, this.clock())
    const key = `${namespace}/${obj.metadata.name}`
    const r = await this.engine.commit(collectionKey(def), key, undefined, 'ADDED', obj)
    if (!r.ok) throw new ShoalError('ALREADY_EXISTS', `${def.kind} ${key} already exists`)
    return withRv(obj, r.rv)
  }

  async get(def: KindDefinition, namespace: string, name: string): Promise<Resource> {
    this.ready()
    const obj = await this.engine.read(collectionKey(def), `${namespace}/${name}`)
    if (!obj) throw notFound(def, namespace, name)
    return obj
  }

  async list(def: KindDefinition, opts: ListOptions = {}): Promise<ResourceList> {
    this.ready()
    const { rv, items } = await this.engine.list(collectionKey(def), opts.namespace)
    const after = opts.continue ? decodeContinue(opts.continue) : undefined
    const out: Resource[] = []
    let next: string | undefined
    for (const obj of items) {
      const key = `${obj.metadata.namespace}/${obj.metadata.name}`
      if (after !== undefined && key <= after) continue
      if (!matches(obj, def, opts.selector)) continue
      if (opts.limit !== undefined && out.length >= opts.limit) {
        next = encodeContinue(keyOf(out[out.length - 1] as Resource))
        break
      }
      out.push(obj)
    }
    return {
      apiVersion: apiVersionOf(def),
      kind: `${def.kind}List`,
      metadata:
        next === undefined
          ? { resourceVersion: String(rv) }
          : { resourceVersion: String(rv), continue: next },
      items: out,
    }
  }

  update(def: KindDefinition, namespace: string, input: ResourceInput): Promise<Resource> {
    return this.write(def, namespace, input?.metadata?.name, input?.metadata, (cur) =>
      prepareUpdate(def, namespace, cur, input),
    )
  }

  updateStatus(def: KindDefinition, namespace: string, input: ResourceInput): Promise<Resource> {
    return this.write(def, namespace, input?.metadata?.name, input?.metadata, (cur) =>
      prepareStatus(def, namespace, cur, input),
    )
  }

  patch(
    def: KindDefinition,
    namespace: string,
    name: string,
    patch: unknown,
    opts: { status?: boolean } = {},
  ): Promise<Resource> {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch))
      throw invalid('(patch)', 'must be a JSON object')
    const pre = ((patch as { metadata?: Preconditions }).metadata ?? {}) as Preconditions
    return this.write(def, namespace, name, pre, (cur) => {
      const merged = mergePatch(cur, patch) as ResourceInput
      if (merged?.metadata?.name !== name) throw invalid('metadata.name', 'a patch cannot rename the object')
      // The patch's own resourceVersion was checked by write(); the merged one is the stored one.
      return opts.status
        ? prepareStatus(def, namespace, cur, merged)
        : prepareUpdate(def, namespace, cur, merged)
    })
  }

  async delete(
    def: KindDefinition,
    namespace: string,
    name: string,
    pre: Preconditions = {},
  ): Promise<DeleteResult> {
    this.ready()
    const coll = collectionKey(def)
    const key = `${namespace}/${name}`
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const cur = await this.engine.read(coll, key)
      if (!cur) throw notFound(def, namespace, name)
      const why = stalePrecondition(cur, pre)
      if (why) throw new ShoalError('CONFLICT', `${def.kind} ${key}: ${why}`)
      if (cur.metadata.finalizers.length > 0) {
        if (cur.metadata.deletionTimestamp !== undefined) return { object: cur, deleted: false }
        const held = { ...cur, metadata: { ...cur.metadata, deletionTimestamp: this.clock().toISOString() } }
        const r = await this.engine.commit(coll, key, cur.metadata.resourceVersion, 'MODIFIED', held)
        if (r.ok) return { object: withRv(held, r.rv), deleted: false }
      } else {
        const r = await this.engine.commit(coll, key, cur.metadata.resourceVersion, 'DELETED', cur)
        if (r.ok) return { object: withRv(cur, r.rv), deleted: true }
      }
      if (isConditional(pre)) throw conflict(def, key)
    }
    throw conflict(def, key)
  }

  /**
   * Read, compute, compare-and-set. A write that removes the last finalizer of an object being
   * deleted deletes it (DELETED), as Kubernetes does.
   */
  private async write(
    def: KindDefinition,
    namespace: string,
    name: unknown,
    pre: Preconditions | undefined,
    compute: (cur: Resource) => Resource | undefined,
  ): Promise<Resource> {
    this.ready()
    if (typeof name !== 'string' || name === '') throw invalid('metadata.name', 'required')
    const coll = collectionKey(def)
    const key = `${namespace}/${name}`
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const cur = await this.engine.read(coll, key)
      if (!cur) throw notFound(def, namespace, name)
      let next: Resource | undefined
      try {
        next = compute(cur)
      } catch (err) {
        if (err instanceof PreconditionFailed)
          throw new ShoalError('CONFLICT', `${def.kind} ${key}: ${err.message}`)
        throw err
      }
      if (!next) return cur
      const gone = next.metadata.deletionTimestamp !== undefined && next.metadata.finalizers.length === 0
      const r = await this.engine.commit(
        coll,
        key,
        cur.metadata.resourceVersion,
        gone ? 'DELETED' : 'MODIFIED',
        next,
      )
      if (r.ok) return withRv(next, r.rv)
      if (r.reason === 'missing') throw notFound(def, namespace, name)
      if (isConditional(pre)) throw conflict(def, key)
    }
    throw conflict(def, key)
  }

  async resourceVersion(): Promise<string> {
    this.ready()
    return String(await this.engine.currentRv())
  }

  async watch(def: KindDefinition, opts: WatchOptions = {}): Promise<AsyncIterable<WatchEvent>> {
    this.ready()
    let initial: Resource[] = []
    let cursor: number
    if (opts.resourceVersion === undefined || opts.resourceVersion === '') {
      const list = await this.list(def, { namespace: opts.namespace, selector: opts.selector })
      initial = list.items
      cursor = Number(list.metadata.resourceVersion)
    } else {
      if (!/^[0-9]{1,15}$/.test(opts.resourceVersion))
        throw invalid('resourceVersion', 'must be a decimal number')
      cursor = Number(opts.resourceVersion)
      await this.engine.events(cursor, 1) // GONE now rather than after the stream has started
    }
    return this.stream(def, opts, initial, cursor)
  }

  private async *stream(
    def: KindDefinition,
    opts: WatchOptions,
    initial: Resource[],
    start: number,
  ): AsyncGenerator<WatchEvent> {
    const coll = collectionKey(def)
    const bookmarkMs = opts.bookmarkIntervalMs ?? 0
    const signal = opts.signal
    let cursor = start
    for (const obj of initial) yield { type: 'ADDED', object: obj }
    let lastSent = Date.now()
    while (!signal?.aborted && this.life.running) {
      const events = await this.engine.events(cursor, WATCH_BATCH)
      for (const e of events) {
        cursor = e.rv
        if (e.coll !== coll) continue
        const out = project(e, def, opts.namespace, opts.selector)
        if (!out) continue
        lastSent = Date.now()
        yield out
        if (signal?.aborted) return
      }
      if (events.length > 0) continue
      const waitMs = bookmarkMs > 0 ? Math.max(0, lastSent + bookmarkMs - Date.now()) : 5_000
      if (waitMs > 0) await this.engine.waitForChange(cursor, waitMs, signal)
      if (bookmarkMs > 0 && Date.now() - lastSent >= bookmarkMs && !signal?.aborted) {
        lastSent = Date.now()
        yield bookmark(def, cursor)
      }
    }
  }
}

/** How one stored change looks to a watch with a namespace and selector (or nothing). */
function project(
  e: StoredEvent,
  def: KindDefinition,
  namespace: string | undefined,
  sel: Selector | undefined,
): WatchEvent | undefined {
  if (namespace !== undefined && e.obj.metadata.namespace !== namespace) return undefined
  const now = matches(e.obj, def, sel)
  if (e.type !== 'MODIFIED') return now ? { type: e.type, object: e.obj } : undefined
  const before = e.old ? matches(e.old, def, sel) : now
  if (now && before) return { type: 'MODIFIED', object: e.obj }
  if (now) return { type: 'ADDED', object: e.obj }
  if (before) return { type: 'DELETED', object: e.obj }
  return undefined
}

export function bookmark(def: KindDefinition, rv: number): WatchEvent {
  return {
    type: 'BOOKMARK',
    object: {
      apiVersion: apiVersionOf(def),
      kind: def.kind,
      metadata: { resourceVersion: String(rv) },
    } as Resource,
  }
}

function withRv(obj: Resource, rv: number): Resource {
  return { ...obj, metadata: { ...obj.metadata, resourceVersion: String(rv) } }
}

function keyOf(obj: Resource): string {
  return `${obj.metadata.namespace}/${obj.metadata.name}`
}

function notFound(def: KindDefinition, namespace: string, name: string): ShoalError {
  return new ShoalError('NOT_FOUND', `${def.kind} ${namespace}/${name} not found`)
}

function conflict(def: KindDefinition, key: string): ShoalError {
  return new ShoalError(
    'CONFLICT',
    `${def.kind} ${key} was changed by another writer: read it again and retry`,
  )
}

function encodeContinue(key: string): string {
  return Buffer.from(JSON.stringify({ k: key })).toString('base64url')
}

function decodeContinue(token: string): string {
  if (token.length > MAX_CONTINUE_CHARS) throw invalid('continue', 'token too long')
  try {
    const v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { k?: unknown }
    if (typeof v.k === 'string') return v.k
  } catch {}
  throw invalid('continue', 'not a token this server gave')
}
