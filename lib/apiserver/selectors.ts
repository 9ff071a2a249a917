/**
 * labelSelector and fieldSelector, with Kubernetes' syntax:
 *   labels: `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, comma-joined (AND)
 *   fields: `f=v`, `f==v`, `f!=v`, comma-joined (AND), f among the kind's selectable fields
 * Both come from query strings: lengths and counts are bounded, garbage is INVALID.
 */
import { fieldAccessor, type KindDefinition } from './registry.js'
import type { Resource } from './types.js'
import { invalid, validateLabelValue, validateQualifiedName } from './validation.js'

const MAX_SELECTOR_CHARS = 4096
const MAX_REQUIREMENTS = 64
const MAX_SET_VALUES = 64

export type LabelRequirement =
  | { key: string; op: 'exists' | '!exists' }
  | { key: string; op: '=' | '!='; value: string }
  | { key: string; op: 'in' | 'notin'; values: string[] }

export interface FieldRequirement {
  field: string
  op: '=' | '!='
  value: string
}

export function parseLabelSelector(text: string | undefined | null): LabelRequirement[] {
  if (!text) return []
  if (text.length > MAX_SELECTOR_CHARS)
    throw invalid('labelSelector', `longer than ${MAX_SELECTOR_CHARS} characters`)
  const reqs: LabelRequirement[] = []
  for (const part of splitTopLevel(text, 'labelSelector')) {
    const s = part.trim()
    if (s === '') throw invalid('labelSelector', 'empty requirement')
    let m = /^!\s*([^\s=!(),]+)$/.exec(s)
    if (m) {
      reqs.push({ key: key(m[1] as string), op: '!exists' })
      continue
    }
    m = /^([^\s=!(),]+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(s)
    if (m) {
      const values = (m[3] as string).split(',').map((v) => v.trim())
      if (values.length > MAX_SET_VALUES)
        throw invalid('labelSelector', `more than ${MAX_SET_VALUES} values in a set`)
      for (const v of values) validateLabelValue(v, 'labelSelector')
      reqs.push({ key: key(m[1] as string), op: m[2] as 'in' | 'notin', values })
      continue
    }
    m = /^([^\s=!(),]+)\s*(==|=|!=)\s*([^\s=!(),]*)$/.exec(s)
    if (m) {
      const value = validateLabelValue(m[3], 'labelSelector')
      reqs.push({ key: key(m[1] as string), op: m[2] === '!=' ? '!=' : '=', value })
      continue
    }
    m = /^([^\s=!(),]+)$/.exec(s)
    if (m) {
      reqs.push({ key: key(m[1] as string), op: 'exists' })
      continue
    }
    throw invalid('labelSelector', `cannot parse "${s.slice(0, 80)}"`)
  }
  if (reqs.length > MAX_REQUIREMENTS)
    throw invalid('labelSelector', `more than ${MAX_REQUIREMENTS} requirements`)
  return reqs
}

export function parseFieldSelector(text: string | undefined | null, def: KindDefinition): FieldRequirement[] {
  if (!text) return []
  if (text.length > MAX_SELECTOR_CHARS)
    throw invalid('fieldSelector', `longer than ${MAX_SELECTOR_CHARS} characters`)
  const reqs: FieldRequirement[] = []
  for (const part of text.split(',')) {
    const m = /^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(part)
    if (!m) throw invalid('fieldSelector', `cannot parse "${part.slice(0, 80)}"`)
    fieldAccessor(def, m[1] as string)
    reqs.push({ field: m[1] as string, op: m[2] === '!=' ? '!=' : '=', value: m[3] as string })
  }
  if (reqs.length > MAX_REQUIREMENTS)
    throw invalid('fieldSelector', `more than ${MAX_REQUIREMENTS} requirements`)
  return reqs
}

export function matchesLabels(labels: Record<string, string>, reqs: readonly LabelRequirement[]): boolean {
  for (const r of reqs) {
    const has = Object.hasOwn(labels, r.key)
    const v = labels[r.key]
    switch (r.op) {
      case 'exists':
        if (!has) return false
        break
      case '!exists':
        if (has) return false
        break
      case '=':
        if (v !== r.value) return false
        break
      case '!=':
        if (v === r.value) return false
        break
      case 'in':
        if (!has || !r.values.includes(v as string)) return false
        break
      case 'notin':
        if (has && r.values.includes(v as string)) return false
        break
    }
  }
  return true
}

export function matchesFields(
  obj: Resource,
  def: KindDefinition,
  reqs: readonly FieldRequirement[],
): boolean {
  for (const r of reqs) {
    const v = fieldAccessor(def, r.field)(obj)
    if (r.op === '=' ? v !== r.value : v === r.value) return false
  }
  return true
}

/** A parsed pair of selectors, as a predicate. */
export interface Selector {
  labels: LabelRequirement[]
  fields: FieldRequirement[]
}

export function parseSelector(
  def: KindDefinition,
  q: { labelSelector?: string | null; fieldSelector?: string | null },
): Selector {
  return { labels: parseLabelSelector(q.labelSelector), fields: parseFieldSelector(q.fieldSelector, def) }
}

export function matches(obj: Resource, def: KindDefinition, sel: Selector | undefined): boolean {
  if (!sel) return true
  return matchesLabels(obj.metadata.labels ?? {}, sel.labels) && matchesFields(obj, def, sel.fields)
}

function key(k: string): string {
  validateQualifiedName(k, 'labelSelector')
  return k
}

/** Splits on commas outside parentheses (a set's values are comma-separated too). */
function splitTopLevel(text: string, field: string): string[] {
  const parts: string[] = []
  let depth = 0
  let start = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '(') depth++
    else if (c === ')') depth--
    if (depth < 0 || depth > 1) throw invalid(field, 'unbalanced parentheses')
    if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i))
      start = i + 1
    }
  }
  if (depth !== 0) throw invalid(field, 'unbalanced parentheses')
  parts.push(text.slice(start))
  return parts
}
