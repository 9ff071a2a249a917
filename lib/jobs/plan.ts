/**
 * A job plan (docs/jobs.md): a Distribution spec plus an optional name and namespace, written
 * in YAML or JSON (JSON is YAML, so one parser reads both). Validation errors are USAGE errors
 * naming the field (`targets.1.path: must be an absolute path`); nothing is sent before the
 * whole plan is valid.
 */
import { parse as parseYaml } from 'yaml'
import { z } from '../config/index.js'
import { ShoalError } from '../errors/index.js'
import { DEFAULT_JOB_NAMESPACE, DistributionSpec, type DistributionSpecT } from './kinds.js'

/** A plan file larger than this is refused before parsing. */
export const MAX_PLAN_BYTES = 4 << 20

/** A DNS label: the name is also the prefix of its task names and a label value. */
export const JobName = z
  .string()
  .regex(
    /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/,
    'a job name: 1-63 of a-z 0-9 -, starting and ending with a letter or digit',
  )

export const PlanSchema = DistributionSpec.omit({ run: true, rerun: true, cancelled: true })
  .extend({
    name: JobName.optional(),
    namespace: JobName.optional(),
  })
  .superRefine((plan, ctx) => {
    const seen = new Map<string, number>()
    plan.targets.forEach((t, i) => {
      const key = `${t.host}\0${t.path.replace(/\/+$/, '') || '/'}\0${t.name ?? ''}`
      const first = seen.get(key)
      if (first !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['targets', i],
          message: `the same host and destination as targets.${first} (${t.host}:${t.path})`,
        })
      else seen.set(key, i)
    })
  })

export interface Plan {
  name?: string
  namespace: string
  spec: DistributionSpecT
}

/** Parses and validates a plan; `source` names it in errors (a file name, or "flags"). */
export function parsePlan(text: string, source: string): Plan {
  if (Buffer.byteLength(text, 'utf8') > MAX_PLAN_BYTES)
    throw new ShoalError('USAGE', `plan ${source} is larger than ${MAX_PLAN_BYTES >> 20} MiB`)
  let doc: unknown
  try {
    doc = parseYaml(text, { maxAliasCount: 100, prettyErrors: false })
  } catch (err) {
    const first = (err as Error).message.split('\n')[0]
    throw new ShoalError('USAGE', `plan ${source} is not valid YAML or JSON: ${first}`, { cause: err })
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
    throw new ShoalError('USAGE', `plan ${source} must be a mapping with source and targets (docs/jobs.md)`)
  return planFrom(doc, source)
}

/** Validates a plan already read (the flags form builds one). */
export function planFrom(doc: unknown, source: string): Plan {
  const parsed = PlanSchema.safeParse(doc)
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 5).map((issue) => {
      const at = issue.path.map(String).join('.')
      if (issue.code === 'unrecognized_keys') {
        const keys = (issue as { keys: string[] }).keys.map((k) => (at ? `${at}.${k}` : k))
        return `unknown field${keys.length > 1 ? 's' : ''} ${keys.join(', ')}`
      }
      if (issue.code === 'invalid_union' && at === 'source')
        return 'source: either {host, path} (a file on a host, pushed first) or {tag} (already pushed)'
      return `${at || '(plan)'}: ${issue.message}`
    })
    throw new ShoalError('USAGE', `invalid plan ${source}: ${problems.join('; ')}`)
  }
  const { name, namespace, ...rest } = parsed.data
  const spec = DistributionSpec.parse(rest)
  return { ...(name ? { name } : {}), namespace: namespace ?? DEFAULT_JOB_NAMESPACE, spec }
}

/** `HOST:/path` (the flags form's --src and --to); IPv6 hosts in brackets: `[fd00::1]:/data`. */
export function hostPath(value: string, flag: string): { host: string; path: string } {
  const bracket = /^\[([^\]]+)\]:(\/.*)$/.exec(value)
  if (bracket) return { host: bracket[1] as string, path: bracket[2] as string }
  const at = value.indexOf(':/')
  if (at <= 0) throw new ShoalError('USAGE', `${flag} ${value}: expected HOST:/absolute/path`)
  return { host: value.slice(0, at), path: value.slice(at + 1) }
}

/** A name for a plan without one: job-<UTC date and time>-<4 random>. */
export function generatedName(now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, '')
    .replace('T', '-')
    .toLowerCase()
  return `job-${stamp}-${Math.random().toString(36).slice(2, 6).padEnd(4, '0')}`
}
