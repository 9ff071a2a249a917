/**
 * The ResourceStore: what the HTTP routes (and in-process controllers) use. Two
 * implementations share one set of semantics (resource-store.ts) over a StorageEngine: the
 * embedded file engine (file-engine.ts) and the shared Redis engine (redis-engine.ts).
 * test/contract/resource-store.contract.ts is the suite both pass.
 */
import type { Service } from '../../lifecycle/index.js'
import type { KindDefinition } from '../registry.js'
import type { Selector } from '../selectors.js'
import type { Resource, ResourceInput, ResourceList, WatchEvent } from '../types.js'

export interface ListOptions {
  /** Undefined: every namespace. */
  namespace?: string
  selector?: Selector
  /** At most this many items; a `continue` token names where the next page starts. */
  limit?: number
  continue?: string
}

export interface WatchOptions {
  namespace?: string
  selector?: Selector
  /**
   * Events after this resourceVersion. Undefined or '': the current objects first (as ADDED),
   * then changes. Older than the store's history window: GONE (list again).
   */
  resourceVersion?: string
  /** A BOOKMARK (the watch's current resourceVersion) after this long without an event; 0: none. */
  bookmarkIntervalMs?: number
  /** Ends the watch (the iterator returns). */
  signal?: AbortSignal
}

export interface Preconditions {
  resourceVersion?: string
  uid?: string
}

export interface DeleteResult {
  /** The last state (deleted) or the state held by finalizers (deletionTimestamp set). */
  object: Resource
  /** False while finalizers hold the object. */
  deleted: boolean
}

export interface ResourceStore extends Service {
  create(def: KindDefinition, namespace: string, input: ResourceInput): Promise<Resource>
  get(def: KindDefinition, namespace: string, name: string): Promise<Resource>
  list(def: KindDefinition, opts?: ListOptions): Promise<ResourceList>
  /**
   * Replaces metadata (labels, annotations, finalizers, ownerReferences) and spec; status is
   * kept. With metadata.resourceVersion set, CONFLICT unless it is the stored one; without, the
   * update applies to whatever is stored.
   */
  update(def: KindDefinition, namespace: string, input: ResourceInput): Promise<Resource>
  /** Replaces status only (the status subresource): spec, metadata and generation stay. */
  updateStatus(def: KindDefinition, namespace: string, input: ResourceInput): Promise<Resource>
  /** A JSON merge patch (RFC 7386) of the object, or of its status with `status: true`. */
  patch(
    def: KindDefinition,
    namespace: string,
    name: string,
    patch: unknown,
    opts?: { status?: boolean },
  ): Promise<Resource>
  delete(def: KindDefinition, namespace: string, name: string, pre?: Preconditions): Promise<DeleteResult>
  /** Validates the start point at once (GONE, INVALID), then streams events in order. */
  watch(def: KindDefinition, opts?: WatchOptions): Promise<AsyncIterable<WatchEvent>>
  /** The store-wide resourceVersion now. */
  resourceVersion(): Promise<string>
}

/** One change as the engines keep it in their history. */
export interface StoredEvent {
  rv: number
  /** collectionKey of the object's kind. */
  coll: string
  type: 'ADDED' | 'MODIFIED' | 'DELETED'
  /** The object after the change (for DELETED: its last state), resourceVersion = rv. */
  obj: Resource
  /** The object before a MODIFIED, so a selective watch can turn it into ADDED or DELETED. */
  old?: Resource
}

export type CommitResult = { ok: true; rv: number } | { ok: false; reason: 'exists' | 'missing' | 'conflict' }

/**
 * What an engine provides: atomic compare-and-set writes, one global counter, a bounded
 * history of changes, and a way to wait for new ones. Objects go in and come out whole; the
 * engine sets metadata.resourceVersion on what it returns.
 */
export interface StorageEngine {
  open(): Promise<void>
  close(): Promise<void>
  read(coll: string, key: string): Promise<Resource | undefined>
  /**
   * Writes `obj` (or deletes, for DELETED) when the stored object's resourceVersion is
   * `expected` (undefined: only when nothing is stored), and appends the change to the history,
   * atomically. Returns the new resourceVersion.
   */
  commit(
    coll: string,
    key: string,
    expected: string | undefined,
    type: StoredEvent['type'],
    obj: Resource,
  ): Promise<CommitResult>
  /** Every object of a collection (keys `ns/name`, sorted), optionally one namespace, with the counter at that instant. */
  list(coll: string, namespace: string | undefined): Promise<{ rv: number; items: Resource[] }>
  /** Up to `limit` events after `after`, in order; GONE when `after` is older than the history. */
  events(after: number, limit: number): Promise<StoredEvent[]>
  currentRv(): Promise<number>
  /** Resolves once an event after `after` may exist, or after `ms`, or when `signal` aborts. */
  waitForChange(after: number, ms: number, signal?: AbortSignal): Promise<void>
}
