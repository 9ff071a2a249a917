/**
 * The kind registry: the plugin seam. A plugin (Distribution jobs, events, the OneX control
 * plane) registers a kind (group, version, kind, plural), a zod schema for its spec (and
 * optionally its status), and the spec or status fields a fieldSelector may name (e.g.
 * `spec.host`, so an agent watches only the work of its host). The store and the HTTP routes
 * know kinds only through this.
 */
import type { ZodType } from '../config/index.js'
import { ShoalError } from '../errors/index.js'
import { apiVersionOf, type KindRef, type Resource } from './types.js'
import { invalid, validateName } from './validation.js'

export interface KindDefinition extends KindRef {
  /** Validates (and may default) the spec; a failure answers 422 naming the field. */
  spec: ZodType<unknown>
  status?: ZodType<unknown>
  /**
   * Fields beyond metadata.name and metadata.namespace a fieldSelector may name, each read as
   * a string from the object (undefined: the field is absent and matches only `!=`).
   */
  selectableFields?: Record<string, (obj: Resource) => string | undefined>
  /**
   * Asked before a delete through the API (not an in-process store delete): throws to refuse it
   * (e.g. FORBIDDEN for OneX's deletion-protection annotation), with the stored object.
   */
  admitDelete?: (obj: Resource) => void
  /**
   * A `/scale` subresource (as a CRD declares one): where the desired and current replica counts
   * live (dotted paths) and the label selector the status reports. GET answers a Scale object;
   * PUT or PATCH of `spec.replicas` writes the desired count into the spec.
   */
  scale?: {
    specReplicasPath: string
    statusReplicasPath: string
    /** The selector of the counted objects as a labelSelector string, read from the object. */
    selector: (obj: Resource) => string
  }
}

/** The fields every kind can be selected on. */
const BUILTIN_FIELDS: Record<string, (obj: Resource) => string | undefined> = {
  'metadata.name': (o) => o.metadata.name,
  'metadata.namespace': (o) => o.metadata.namespace,
}

export class KindRegistry {
  private readonly byPlural = new Map<string, KindDefinition>()
  private readonly byKind = new Map<string, KindDefinition>()

  register(def: KindDefinition): this {
    if (def.group !== '') validateName(def.group, 'group')
    if (!/^v[0-9]+((alpha|beta)[0-9]+)?$/.test(def.version))
      throw new ShoalError(
        'BAD_REQUEST',
        `kind ${def.kind}: version "${def.version}" is not like v1, v1beta1`,
      )
    if (!/^[A-Z][A-Za-z0-9]{0,62}$/.test(def.kind))
      throw new ShoalError('BAD_REQUEST', `kind "${def.kind}" is not a CamelCase word`)
    if (!/^[a-z][a-z0-9]{0,62}$/.test(def.plural))
      throw new ShoalError(
        'BAD_REQUEST',
        `kind ${def.kind}: plural "${def.plural}" is not lower-case letters and digits`,
      )
    const pKey = `${def.group}/${def.version}/${def.plural}`
    const kKey = `${apiVersionOf(def)}/${def.kind}`
    if (this.byPlural.has(pKey) || this.byKind.has(kKey))
      throw new ShoalError('ALREADY_EXISTS', `kind ${kKey} (${def.plural}) is registered already`)
    this.byPlural.set(pKey, def)
    this.byKind.set(kKey, def)
    return this
  }

  /** The kind served at /apis/<group>/<version>/.../<plural>; NOT_FOUND otherwise. */
  resolve(group: string, version: string, plural: string): KindDefinition {
    const def = this.byPlural.get(`${group}/${version}/${plural}`)
    if (!def) throw new ShoalError('NOT_FOUND', `no resource ${plural} in ${group}/${version}`)
    return def
  }

  kinds(): KindDefinition[] {
    return [...this.byPlural.values()]
  }
}

/** The accessor of a selectable field of `def`, or INVALID naming the fields it has. */
export function fieldAccessor(def: KindDefinition, field: string): (obj: Resource) => string | undefined {
  const get = BUILTIN_FIELDS[field] ?? def.selectableFields?.[field]
  if (!get) {
    const known = [...Object.keys(BUILTIN_FIELDS), ...Object.keys(def.selectableFields ?? {})]
    throw invalid(
      'fieldSelector',
      `"${field.slice(0, 80)}" is not a selectable field of ${def.kind} (${known.join(', ')})`,
    )
  }
  return get
}

/** Parses a value against a zod schema; INVALID naming the first failing field under `prefix`. */
export function parseWith(schema: ZodType<unknown>, value: unknown, prefix: string): unknown {
  const parsed = schema.safeParse(value)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  const at = [prefix, ...(issue?.path ?? []).map(String)].join('.')
  throw invalid(at, issue?.message ?? 'invalid')
}
