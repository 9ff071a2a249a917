/**
 * The rules of a write, as pure functions over (stored object, what the client sent): what a
 * create fills in, what an update may change, when generation moves, what a status update
 * keeps, how finalizers hold a delete. Both engines get the same objects from here.
 */
import { randomUUID } from 'node:crypto'
import { type KindDefinition, parseWith } from '../registry.js'
import {
  apiVersionOf,
  type ObjectMeta,
  type OwnerReference,
  type Resource,
  type ResourceInput,
} from '../types.js'
import {
  boundedJson,
  invalid,
  LIMITS,
  validateAnnotations,
  validateFinalizers,
  validateLabels,
  validateName,
  validateNamespace,
} from '../validation.js'

/** The object's identity and body checks common to create and update. */
function checkEnvelope(def: KindDefinition, namespace: string, input: ResourceInput): void {
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    throw invalid('(object)', 'must be an object')
  if (input.metadata === null || typeof input.metadata !== 'object') throw invalid('metadata', 'required')
  const apiVersion = apiVersionOf(def)
  if (input.apiVersion !== undefined && input.apiVersion !== apiVersion)
    throw invalid('apiVersion', `must be ${apiVersion}`)
  if (input.kind !== undefined && input.kind !== def.kind) throw invalid('kind', `must be ${def.kind}`)
  validateNamespace(namespace, 'namespace')
  if (input.metadata.namespace !== undefined && input.metadata.namespace !== namespace)
    throw invalid(
      'metadata.namespace',
      `"${String(input.metadata.namespace).slice(0, 80)}" is not the namespace of the request (${namespace})`,
    )
  validateName(input.metadata.name)
}

function ownerReferences(value: unknown): OwnerReference[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw invalid('metadata.ownerReferences', 'must be a list')
  if (value.length > LIMITS.ownerReferenceCount)
    throw invalid('metadata.ownerReferences', `more than ${LIMITS.ownerReferenceCount}`)
  return value.map((r, i) => {
    const at = `metadata.ownerReferences.${i}`
    if (r === null || typeof r !== 'object') throw invalid(at, 'must be an object')
    const { apiVersion, kind, name, uid, controller } = r as Record<string, unknown>
    for (const [k, v] of Object.entries({ apiVersion, kind, uid }))
      if (typeof v !== 'string' || v === '' || v.length > 253)
        throw invalid(`${at}.${k}`, 'required, a string')
    validateName(name, `${at}.name`)
    if (controller !== undefined && typeof controller !== 'boolean')
      throw invalid(`${at}.controller`, 'must be a boolean')
    return {
      apiVersion: apiVersion as string,
      kind: kind as string,
      name: name as string,
      uid: uid as string,
      ...(controller === undefined ? {} : { controller }),
    }
  })
}

/** The metadata a client may set, validated. */
function clientMeta(
  input: ResourceInput,
): Pick<ObjectMeta, 'labels' | 'annotations' | 'finalizers' | 'ownerReferences'> {
  return {
    labels: validateLabels(input.metadata.labels),
    annotations: validateAnnotations(input.metadata.annotations),
    finalizers: validateFinalizers(input.metadata.finalizers),
    ownerReferences: ownerReferences(input.metadata.ownerReferences),
  }
}

/** A new object from a create request. Status is not taken: it is set through /status only. */
export function prepareCreate(
  def: KindDefinition,
  namespace: string,
  input: ResourceInput,
  now: Date,
): Resource {
  checkEnvelope(def, namespace, input)
  if (input.metadata.resourceVersion !== undefined && input.metadata.resourceVersion !== '')
    throw invalid('metadata.resourceVersion', 'must not be set on create')
  const obj: Resource = {
    apiVersion: apiVersionOf(def),
    kind: def.kind,
    metadata: {
      name: input.metadata.name,
      namespace,
      uid: randomUUID(),
      ...clientMeta(input),
      resourceVersion: '',
      generation: 1,
      creationTimestamp: now.toISOString(),
    },
    spec: parseWith(def.spec, input.spec, 'spec'),
  }
  boundedJson(obj)
  return obj
}

/**
 * The object after an update of `current` with `input`: client metadata and spec from input,
 * the rest from current; generation + 1 when the spec changed. Undefined when nothing changed
 * (no write, no event: a no-op update keeps its resourceVersion).
 */
export function prepareUpdate(
  def: KindDefinition,
  namespace: string,
  current: Resource,
  input: ResourceInput,
): Resource | undefined {
  checkEnvelope(def, namespace, input)
  checkPreconditions(current, input.metadata)
  const meta = clientMeta(input)
  if (current.metadata.deletionTimestamp !== undefined) {
    const added = meta.finalizers.filter((f) => !current.metadata.finalizers.includes(f))
    if (added.length > 0)
      throw invalid('metadata.finalizers', `cannot add ${added[0]} to an object being deleted`)
  }
  const spec = parseWith(def.spec, input.spec, 'spec')
  const specChanged = stableJson(spec) !== stableJson(current.spec)
  const next: Resource = {
    ...current,
    metadata: {
      ...current.metadata,
      ...meta,
      generation: current.metadata.generation + (specChanged ? 1 : 0),
    },
    spec,
  }
  if (stableJson(next) === stableJson(current)) return undefined
  boundedJson(next)
  return next
}

/** The object with `input`'s status and everything else of `current`. Undefined: no change. */
export function prepareStatus(
  def: KindDefinition,
  namespace: string,
  current: Resource,
  input: ResourceInput,
): Resource | undefined {
  checkEnvelope(def, namespace, input)
  checkPreconditions(current, input.metadata)
  const status = def.status ? parseWith(def.status, input.status, 'status') : input.status
  const next: Resource = { ...current, status }
  if (status === undefined) delete next.status
  if (stableJson(next.status) === stableJson(current.status)) return undefined
  boundedJson(next)
  return next
}

/** CONFLICT-worthy: the client names a version or uid that is not the stored one. */
export function stalePrecondition(
  current: Resource,
  pre: { resourceVersion?: unknown; uid?: unknown },
): string | undefined {
  if (pre.uid !== undefined && pre.uid !== '' && pre.uid !== current.metadata.uid)
    return `uid ${String(pre.uid).slice(0, 64)} is not the stored object's (${current.metadata.uid}): it was deleted and created again`
  if (
    pre.resourceVersion !== undefined &&
    pre.resourceVersion !== '' &&
    pre.resourceVersion !== current.metadata.resourceVersion
  )
    return `resourceVersion ${String(pre.resourceVersion).slice(0, 32)} is not the stored one (${current.metadata.resourceVersion}): read it again and retry`
  return undefined
}

export class PreconditionFailed {
  constructor(readonly message: string) {}
}

function checkPreconditions(current: Resource, pre: { resourceVersion?: unknown; uid?: unknown }): void {
  const why = stalePrecondition(current, pre)
  if (why) throw new PreconditionFailed(why)
}

/** True when a client asked for a conditional write (a stale version then answers CONFLICT, no retry). */
export function isConditional(pre: { resourceVersion?: unknown } | undefined): boolean {
  return pre?.resourceVersion !== undefined && pre.resourceVersion !== ''
}

/** RFC 7386 JSON merge patch: objects merge, null removes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch
  const base: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as object) } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (k === '__proto__') continue
    if (v === null) delete base[k]
    else base[k] = mergePatch(base[k], v)
  }
  return base
}

/** JSON with object keys sorted: equal values give equal strings (for "did it change?"). */
export function stableJson(value: unknown): string {
  return (
    JSON.stringify(value, (_k, v) =>
      v !== null && typeof v === 'object' && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
        : v,
    ) ?? 'undefined'
  )
}
