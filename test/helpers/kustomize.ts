/**
 * Enough of `kustomize build` to check the manifests in examples/kubernetes without a cluster
 * or the kustomize binary (neither is on the test machines): resources (files and folders with
 * a kustomization.yaml), `namespace`, configMapGenerator / secretGenerator (files and literals,
 * `behavior: merge|replace`) and `patches` given as files of partial objects, merged the
 * strategic way for the fields our manifests use (maps deep-merged; lists of named items
 * merged by name; other lists replaced). Anything else in a kustomization fails the render, so
 * a manifest that relies on a feature this does not model is noticed, not silently skipped.
 */
import { readFileSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { parse, parseAllDocuments } from 'yaml'

// biome-ignore lint/suspicious/noExplicitAny: manifests are free-form; the checks narrow them
type Any = any

export type K8sObject = {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string> }
  [key: string]: Any
}

const KNOWN_KEYS = new Set([
  'apiVersion',
  'kind',
  'namespace',
  'resources',
  'configMapGenerator',
  'secretGenerator',
  'patches',
  'images',
])

interface Generator {
  name: string
  behavior?: 'create' | 'merge' | 'replace'
  files?: string[]
  literals?: string[]
}

/** Every YAML document of a file, each required to be a Kubernetes object. */
export function readObjects(file: string): K8sObject[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((doc, i) => {
    if (doc.errors.length) throw new Error(`${file} document ${i}: ${doc.errors[0]?.message}`)
    const obj = doc.toJS() as K8sObject
    if (!obj?.apiVersion || !obj.kind || !obj.metadata?.name) {
      throw new Error(`${file} document ${i}: not a Kubernetes object (apiVersion, kind, metadata.name)`)
    }
    return obj
  })
}

/** The objects `kustomize build dir` would print, before name-hash suffixes. */
export function build(dir: string): K8sObject[] {
  const kust = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Record<string, Any>
  for (const key of Object.keys(kust)) {
    if (!KNOWN_KEYS.has(key)) throw new Error(`${dir}/kustomization.yaml: "${key}" is not modelled`)
  }
  let objects: K8sObject[] = []
  for (const res of (kust.resources ?? []) as string[]) {
    const path = join(dir, res)
    objects.push(...(statSync(path).isDirectory() ? build(path) : readObjects(path)))
  }
  for (const [kind, gens] of [
    ['ConfigMap', kust.configMapGenerator],
    ['Secret', kust.secretGenerator],
  ] as const) {
    for (const gen of (gens ?? []) as Generator[]) objects = generate(objects, dir, kind, gen)
  }
  for (const patch of (kust.patches ?? []) as { path?: string }[]) {
    if (!patch.path) throw new Error(`${dir}/kustomization.yaml: only patches given by path are modelled`)
    for (const partial of readObjects(join(dir, patch.path))) {
      const target = objects.find((o) => o.kind === partial.kind && o.metadata.name === partial.metadata.name)
      if (!target)
        throw new Error(`${dir}/${patch.path}: no ${partial.kind} "${partial.metadata.name}" to patch`)
      objects[objects.indexOf(target)] = strategicMerge(target, partial) as K8sObject
    }
  }
  if (kust.namespace) {
    for (const o of objects) if (o.kind !== 'Namespace') o.metadata.namespace = kust.namespace
  }
  return objects
}

function generate(
  objects: K8sObject[],
  dir: string,
  kind: 'ConfigMap' | 'Secret',
  gen: Generator,
): K8sObject[] {
  const data: Record<string, string> = {}
  for (const file of gen.files ?? []) data[basename(file)] = readFileSync(join(dir, file), 'utf8')
  for (const literal of gen.literals ?? []) {
    const eq = literal.indexOf('=')
    data[literal.slice(0, eq)] = literal.slice(eq + 1)
  }
  const existing = objects.find((o) => o.kind === kind && o.metadata.name === gen.name)
  const field = kind === 'Secret' ? 'stringData' : 'data'
  if (!gen.behavior || gen.behavior === 'create') {
    if (existing) throw new Error(`${dir}: ${kind} "${gen.name}" generated twice`)
    return [...objects, { apiVersion: 'v1', kind, metadata: { name: gen.name }, [field]: data }]
  }
  if (!existing) throw new Error(`${dir}: ${kind} "${gen.name}" to ${gen.behavior} does not exist`)
  const merged = gen.behavior === 'merge' ? { ...existing[field], ...data } : data
  return objects.map((o) => (o === existing ? { ...o, [field]: merged } : o))
}

/** Maps merge key by key; lists whose items all have a `name` merge item by item; the rest replace. */
export function strategicMerge(base: unknown, patch: unknown): unknown {
  if (Array.isArray(base) && Array.isArray(patch) && [...base, ...patch].every(named)) {
    const out = base.map((item) => {
      const over = patch.find((p) => p.name === item.name)
      return over ? strategicMerge(item, over) : item
    })
    return [...out, ...patch.filter((p) => !base.some((b) => b.name === p.name))]
  }
  if (isMap(base) && isMap(patch)) {
    const out: Record<string, unknown> = { ...base }
    for (const [k, v] of Object.entries(patch)) out[k] = k in base ? strategicMerge(base[k], v) : v
    return out
  }
  return patch
}

function named(item: unknown): item is { name: string } {
  return isMap(item) && typeof item.name === 'string'
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
