/**
 * Validation of what every resource carries, whatever its kind: names (DNS-1123 labels and
 * subdomains), label keys and values, annotation sizes, finalizer names, owner references, and
 * a bound on the whole object's JSON size. Limits follow Kubernetes' where it has them, so an
 * object valid here would be valid there.
 */
import { ShoalError } from '../errors/index.js'

export const LIMITS = {
  /** DNS-1123 subdomain, as Kubernetes names. */
  nameBytes: 253,
  namespaceBytes: 63,
  labelCount: 64,
  labelValueBytes: 63,
  labelNameBytes: 63,
  labelPrefixBytes: 253,
  /** All annotations together (keys and values). */
  annotationBytes: 256 * 1024,
  annotationCount: 128,
  finalizerCount: 32,
  ownerReferenceCount: 16,
  /** The whole object as JSON; the store and the HTTP body limit both enforce it. */
  objectBytes: 512 * 1024,
} as const

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/

export function invalid(field: string, message: string): ShoalError {
  return new ShoalError('INVALID', `${field}: ${message}`, { details: { field } })
}

export function validateName(name: unknown, field = 'metadata.name'): string {
  if (typeof name !== 'string' || name === '') throw invalid(field, 'required')
  if (name.length > LIMITS.nameBytes) throw invalid(field, `longer than ${LIMITS.nameBytes} characters`)
  if (!DNS1123_SUBDOMAIN.test(name))
    throw invalid(field, `"${name.slice(0, 80)}" is not lower-case letters, digits, '-' and '.' (DNS-1123)`)
  return name
}

export function validateNamespace(ns: unknown, field = 'metadata.namespace'): string {
  if (typeof ns !== 'string' || ns === '') throw invalid(field, 'required')
  if (ns.length > LIMITS.namespaceBytes || !DNS1123_LABEL.test(ns))
    throw invalid(field, `"${ns.slice(0, 80)}" is not a DNS-1123 label (a-z, 0-9, '-', at most 63)`)
  return ns
}

/** A qualified name `[prefix/]name` (label keys, annotation keys, finalizers). */
export function validateQualifiedName(key: string, field: string): void {
  const slash = key.indexOf('/')
  const prefix = slash < 0 ? undefined : key.slice(0, slash)
  const name = slash < 0 ? key : key.slice(slash + 1)
  if (prefix !== undefined && (prefix.length > LIMITS.labelPrefixBytes || !DNS1123_SUBDOMAIN.test(prefix)))
    throw invalid(field, `prefix of "${key.slice(0, 80)}" is not a DNS-1123 subdomain`)
  if (name.length > LIMITS.labelNameBytes || !LABEL_NAME.test(name))
    throw invalid(
      field,
      `"${key.slice(0, 80)}" is not a qualified name (alphanumerics, '-', '_', '.', at most 63)`,
    )
}

export function validateLabelValue(value: unknown, field: string): string {
  if (typeof value !== 'string') throw invalid(field, 'must be a string')
  if (value.length > LIMITS.labelValueBytes || !LABEL_VALUE.test(value))
    throw invalid(
      field,
      `"${value.slice(0, 80)}" is not a label value (alphanumerics, '-', '_', '.', at most 63)`,
    )
  return value
}

export function validateLabels(labels: unknown, field = 'metadata.labels'): Record<string, string> {
  const map = stringMap(labels, field)
  const keys = Object.keys(map)
  if (keys.length > LIMITS.labelCount) throw invalid(field, `more than ${LIMITS.labelCount} labels`)
  for (const k of keys) {
    validateQualifiedName(k, `${field}.${k.slice(0, 80)}`)
    validateLabelValue(map[k], `${field}.${k.slice(0, 80)}`)
  }
  return map
}

export function validateAnnotations(ann: unknown, field = 'metadata.annotations'): Record<string, string> {
  const map = stringMap(ann, field)
  const keys = Object.keys(map)
  if (keys.length > LIMITS.annotationCount)
    throw invalid(field, `more than ${LIMITS.annotationCount} annotations`)
  let bytes = 0
  for (const k of keys) {
    validateQualifiedName(k, `${field}.${k.slice(0, 80)}`)
    bytes += Buffer.byteLength(k) + Buffer.byteLength(map[k] as string)
  }
  if (bytes > LIMITS.annotationBytes)
    throw invalid(field, `larger than ${LIMITS.annotationBytes} bytes in all`)
  return map
}

export function validateFinalizers(list: unknown, field = 'metadata.finalizers'): string[] {
  if (list === undefined) return []
  if (!Array.isArray(list)) throw invalid(field, 'must be a list of strings')
  if (list.length > LIMITS.finalizerCount)
    throw invalid(field, `more than ${LIMITS.finalizerCount} finalizers`)
  const seen = new Set<string>()
  for (const f of list) {
    if (typeof f !== 'string') throw invalid(field, 'must be a list of strings')
    validateQualifiedName(f, field)
    seen.add(f)
  }
  return [...seen]
}

function stringMap(value: unknown, field: string): Record<string, string> {
  if (value === undefined) return {}
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw invalid(field, 'must be an object of strings')
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw invalid(`${field}.${k.slice(0, 80)}`, 'must be a string')
    out[k] = v
  }
  return out
}

/** The object's JSON, refused when larger than the bound (INVALID, since it is the object that is wrong). */
export function boundedJson(obj: unknown, limit: number = LIMITS.objectBytes): string {
  const json = JSON.stringify(obj)
  if (Buffer.byteLength(json) > limit) throw invalid('(object)', `larger than ${limit} bytes as JSON`)
  return json
}
