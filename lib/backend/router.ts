/**
 * Backends per namespace: `namespaces: [{ namespace: '<regex>', backend: {...} }]` in a
 * daemon's config sends each namespace's blobs to the first entry whose regex matches the
 * whole namespace (so "library" does not also catch "library-old"), e.g. one bucket for
 * "prod/.*" and a local folder for the rest. A namespace no entry matches goes to the
 * fallback (the config's plain `backend:`), or is refused with an error naming it when
 * there is none.
 */
import { z } from '../config/index.js'
import { ShoalError } from '../errors/index.js'
import { BackendConfig, createBackend } from './index.js'
import type { Backend } from './types.js'

export const NamespaceBackendConfig = z.strictObject({
  /** A regular expression the whole namespace must match (it is anchored: ^(?:...)$). */
  namespace: z.string().min(1),
  backend: BackendConfig,
})
export type NamespaceBackendConfig = z.output<typeof NamespaceBackendConfig>

export const NamespaceBackendsConfig = z.array(NamespaceBackendConfig)

interface Route {
  source: string
  pattern: RegExp
  backend: Backend
}

export class NamespaceBackends {
  private readonly routes: Route[]

  /** `fallback` serves namespaces no route matches; without one such namespaces are refused. */
  constructor(
    routes: { namespace: string; backend: Backend }[],
    private readonly fallback?: Backend,
  ) {
    this.routes = routes.map((r, i) => ({
      source: r.namespace,
      pattern: compile(r.namespace, i),
      backend: r.backend,
    }))
  }

  /** One backend for every namespace (no `namespaces:` configured, or a test's injected backend). */
  static single(backend: Backend): NamespaceBackends {
    return new NamespaceBackends([], backend)
  }

  /** Builds every backend of the config now, so a bad regex or a missing credential file stops the start. */
  static fromConfig(
    list: readonly NamespaceBackendConfig[],
    fallback: BackendConfig | Backend | undefined,
    create: (c: BackendConfig) => Backend = createBackend,
  ): NamespaceBackends {
    // Regexes first: a typo there should not wait for a backend to be built.
    for (const [i, r] of list.entries()) compile(r.namespace, i)
    const fb = fallback === undefined ? undefined : 'kind' in fallback ? fallback : create(fallback)
    return new NamespaceBackends(
      list.map((r) => ({ namespace: r.namespace, backend: create(r.backend) })),
      fb,
    )
  }

  /** The backend holding `namespace`'s blobs. */
  for(namespace: string): Backend {
    for (const r of this.routes) if (r.pattern.test(namespace)) return r.backend
    if (this.fallback) return this.fallback
    throw new ShoalError(
      'BAD_REQUEST',
      `no backend is configured for namespace "${namespace}" (the "namespaces" entries are: ${this.routes
        .map((r) => r.source)
        .join(', ')})`,
      { details: { namespace } },
    )
  }

  /** Every distinct backend, routes first, then the fallback. */
  all(): Backend[] {
    return [...new Set([...this.routes.map((r) => r.backend), ...(this.fallback ? [this.fallback] : [])])]
  }

  /** Runs every backend's start-up check (those that have one), one after another. */
  async check(signal?: AbortSignal): Promise<void> {
    for (const b of this.all()) await b.check?.(signal)
  }

  /** For logs: `namespace regex → backend kind`, plus the fallback. */
  describe(): string {
    const parts = this.routes.map((r) => `${r.source} → ${r.backend.kind}`)
    if (this.fallback) parts.push(`* → ${this.fallback.kind}`)
    return parts.join(', ')
  }
}

function compile(source: string, index: number): RegExp {
  try {
    return new RegExp(`^(?:${source})$`, 'u')
  } catch (err) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `namespaces[${index}].namespace "${source}" is not a valid regular expression: ${(err as Error).message}`,
    )
  }
}
