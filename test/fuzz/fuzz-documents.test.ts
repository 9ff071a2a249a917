/**
 * Properties of the documents Shoal reads from elsewhere: directory manifests (a blob anyone
 * may have pushed) and config files (YAML an operator wrote, or a mount gone wrong). Garbage
 * is refused with BAD_MANIFEST / CONFIG_INVALID only; a valid manifest round-trips to the
 * same bytes; a config either validates or names what is wrong.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import t from 'tap'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { encodeManifest, type Manifest, type ManifestEntry, parseManifest } from '../../lib/cli/manifest.js'
import { loadConfig, validateConfig, type ZodType } from '../../lib/config/index.js'
import { HerdConfigSchema } from '../../lib/herd/config.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { ProxyConfigSchema } from '../../lib/proxy/config.js'
import { TrackerConfigSchema } from '../../lib/tracker/config.js'
import { tempDir } from '../helpers/files.js'
import { hostileChar, nearText, property, refusedOnlyWith } from './fuzz.js'

const component = fc.oneof(
  fc.constantFrom('a', 'b', 'a.b', 'é', '交易', 'x y', '-', '.a'),
  fc.string({ minLength: 1, maxLength: 8 }).filter((s) => !/[/\\\0]/.test(s) && s !== '.' && s !== '..'),
)
const digestHex = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .map((b) => `sha256:${Buffer.from(b).toString('hex')}`)
const mode = fc.integer({ min: 0, max: 0o777 })
const mtime = fc.oneof(
  fc.integer({ min: -1e13, max: 1e13 }),
  fc.double({ min: -1e13, max: 1e13, noNaN: true }),
)

/** A well-formed manifest: every parent listed as a dir, files at the leaves. */
const manifest: fc.Arbitrary<Manifest> = fc
  .tuple(
    fc.array(fc.array(component, { minLength: 1, maxLength: 3 }), { maxLength: 12 }),
    fc.array(fc.tuple(mode, mtime, fc.maxSafeNat(), digestHex), { minLength: 12, maxLength: 12 }),
    mode,
    mtime,
  )
  .map(([paths, attrs, rootMode, rootMtime]) => {
    const dirs = new Set<string>()
    const leaves = new Set<string>()
    for (const parts of paths) {
      for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'))
      leaves.add(parts.join('/'))
    }
    const entries: ManifestEntry[] = []
    let i = 0
    for (const path of new Set([...dirs, ...leaves])) {
      const [m, mt, size, digest] = attrs[i++ % attrs.length]!
      if (dirs.has(path)) entries.push({ path, type: 'dir', size: 0, mode: m, mtimeMs: mt })
      // Sizes stay small enough that their sum is still a safe integer.
      else entries.push({ path, type: 'file', size: size % 2 ** 40, mode: m, mtimeMs: mt, digest })
    }
    return { version: 1 as const, root: { mode: rootMode, mtimeMs: rootMtime }, entries }
  })

/** A JSON document with one value somewhere replaced by a hostile one. */
function mutate(doc: unknown, path: number[], replacement: unknown): unknown {
  if (path.length === 0 || typeof doc !== 'object' || doc === null) return replacement
  const keys = Object.keys(doc)
  if (keys.length === 0) return replacement
  const key = keys[path[0]! % keys.length]!
  const copy: Record<string, unknown> = Array.isArray(doc) ? ([...doc] as never) : { ...doc }
  copy[key] = mutate((doc as Record<string, unknown>)[key], path.slice(1), replacement)
  return copy
}
const hostileValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  nearText,
  fc.constantFrom(-1, 0, 2 ** 53, 1e308, -0, 0.5, '', '../x', '/etc/passwd', '__proto__', null, [], {}),
)

t.test('directory manifests', async (t) => {
  property(
    t,
    'a valid manifest parses and encodes back to the same bytes',
    fc.property(manifest, (m) => {
      const bytes = encodeManifest(m)
      const again = encodeManifest(parseManifest(bytes))
      if (!again.equals(bytes)) throw new Error(`not canonical:\n${bytes}\n${again}`)
    }),
  )
  property(
    t,
    'any bytes are a manifest or BAD_MANIFEST',
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }),
        nearText.map((s) => Buffer.from(s)),
      ),
      (b) => {
        refusedOnlyWith(['BAD_MANIFEST'], () => parseManifest(Buffer.from(b)))
      },
    ),
  )
  property(
    t,
    'a manifest with one value replaced is a manifest or BAD_MANIFEST, and never lists an unsafe path',
    fc.property(manifest, fc.array(fc.nat(), { maxLength: 4 }), hostileValue, (m, path, v) => {
      const doc = JSON.parse(encodeManifest(m).toString())
      const bytes = Buffer.from(JSON.stringify(mutate(doc, path, v)))
      const parsed = refusedOnlyWith(['BAD_MANIFEST'], () => parseManifest(bytes))
      for (const e of parsed?.entries ?? [])
        if (e.path.startsWith('/') || e.path.split('/').some((p) => p === '..' || p === '.' || p === ''))
          throw new Error(`unsafe path accepted: ${e.path}`)
    }),
  )
})

const schemas: Record<string, ZodType<unknown>> = {
  agent: AgentConfigSchema,
  origin: OriginConfigSchema,
  tracker: TrackerConfigSchema,
  'build-index': BuildIndexConfigSchema,
  proxy: ProxyConfigSchema,
  herd: HerdConfigSchema,
}

t.test('config files', async (t) => {
  const dir = await tempDir(t)
  property(
    t,
    "every daemon's defaults with one value replaced validate or are CONFIG_INVALID",
    fc.property(
      fc.constantFrom(...Object.keys(schemas)),
      fc.array(fc.nat(), { minLength: 1, maxLength: 4 }),
      hostileValue,
      (name, path, v) => {
        const schema = schemas[name]!
        const defaults = JSON.parse(JSON.stringify(validateConfig(schema, {})))
        refusedOnlyWith(['CONFIG_INVALID'], () => validateConfig(schema, mutate(defaults, path, v)))
      },
    ),
  )
  property(
    t,
    'any value is a config or CONFIG_INVALID',
    fc.property(fc.constantFrom(...Object.keys(schemas)), fc.anything({ maxDepth: 3 }), (name, v) => {
      refusedOnlyWith(['CONFIG_INVALID'], () => validateConfig(schemas[name]!, v))
    }),
  )
  let n = 0
  property(
    t,
    'any file text is a config or CONFIG_INVALID',
    fc.property(
      fc.constantFrom(...Object.keys(schemas)),
      fc.oneof(
        nearText,
        fc
          .array(
            fc.oneof(
              hostileChar,
              fc.constantFrom(': ', '\n  ', '- ', 'extends: ', 'server:', '&a ', '*a', '!!binary ', '{', '['),
            ),
            { maxLength: 30 },
          )
          .map((a) => a.join('')),
      ),
      (name, text) => {
        const file = join(dir, `c${n++}.yaml`)
        writeFileSync(file, text)
        refusedOnlyWith(['CONFIG_INVALID'], () => loadConfig(schemas[name]!, { component: name, file }))
      },
    ),
    4,
  )
})
