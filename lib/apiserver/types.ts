/**
 * The resource model of the API (kube-style): every object has apiVersion, kind, metadata,
 * spec and status. The store owns uid, resourceVersion, generation, creationTimestamp and
 * deletionTimestamp; clients own the rest of metadata and the spec; controllers own status.
 */

export interface OwnerReference {
  apiVersion: string
  kind: string
  name: string
  uid: string
  controller?: boolean
}

export interface ObjectMeta {
  name: string
  namespace: string
  uid: string
  labels: Record<string, string>
  annotations: Record<string, string>
  /** A decimal string: the store-wide counter value of this object's last write. */
  resourceVersion: string
  /** Bumped by the store on every change of spec (never by status or metadata). */
  generation: number
  creationTimestamp: string
  /** Set by a delete while finalizers remain: the object stays until they are removed. */
  deletionTimestamp?: string
  finalizers: string[]
  ownerReferences: OwnerReference[]
}

export interface Resource<Spec = unknown, Status = unknown> {
  apiVersion: string
  kind: string
  metadata: ObjectMeta
  spec: Spec
  status?: Status
}

/** What a client sends: the store fills in what is missing of metadata. */
export interface ResourceInput<Spec = unknown, Status = unknown> {
  apiVersion?: string
  kind?: string
  metadata: Partial<ObjectMeta> & { name: string }
  spec: Spec
  status?: Status
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK'

export interface WatchEvent<R = Resource> {
  type: WatchEventType
  /** For BOOKMARK: only apiVersion, kind and metadata.resourceVersion are meaningful. */
  object: R
}

export interface ResourceList<R = Resource> {
  apiVersion: string
  kind: string
  metadata: { resourceVersion: string; continue?: string }
  items: R[]
}

/** One kind's identity: the store keys its objects by group and plural. */
export interface KindRef {
  group: string
  version: string
  kind: string
  plural: string
}

export function apiVersionOf(ref: { group: string; version: string }): string {
  return ref.group === '' ? ref.version : `${ref.group}/${ref.version}`
}

/** The key of a kind's collection in a store: `group/plural` (the version is a view of it). */
export function collectionKey(ref: { group: string; plural: string }): string {
  return `${ref.group}/${ref.plural}`
}
