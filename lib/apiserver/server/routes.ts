/**
 * The resource routes, mounted on any lib/http Router:
 *   /apis/<group>/<version>/namespaces/<ns>/<plural>               GET list|watch, POST create
 *   /apis/<group>/<version>/namespaces/<ns>/<plural>/<name>        GET, PUT, PATCH, DELETE
 *   /apis/<group>/<version>/namespaces/<ns>/<plural>/<name>/status GET, PUT, PATCH
 *   /apis/<group>/<version>/namespaces/<ns>/<plural>/<name>/scale  GET, PUT, PATCH (kinds with `scale`)
 *   /apis/<group>/<version>/<plural>                                GET list|watch across namespaces
 *   /apis                                                           GET the registered kinds
 */
import type { IncomingMessage } from 'node:http'
import type { TokenAuth } from '../../auth/index.js'
import { ShoalError } from '../../errors/index.js'
import { type RouteContext, type Router, readBody, sendJson } from '../../http/index.js'
import type { KindDefinition, KindRegistry } from '../registry.js'
import { parseSelector } from '../selectors.js'
import type { ResourceStore } from '../store/types.js'
import { apiVersionOf, type Resource, type ResourceInput } from '../types.js'
import { LIMITS, validateNamespace } from '../validation.js'
import { streamWatch, type WatchLimits } from './watch.js'

export interface ResourceApiDeps {
  store: ResourceStore
  registry: KindRegistry
  auth: TokenAuth
  watch: WatchLimits
  /** Largest request body (an object, a patch). */
  maxBodyBytes?: number
}

const MAX_LIST_LIMIT = 10_000

export function mountResourceApi(router: Router, deps: ResourceApiDeps): { activeWatchers(): number } {
  const { store, registry, auth } = deps
  const maxBody = deps.maxBodyBytes ?? LIMITS.objectBytes + 4096
  let watchers = 0
  const base = '/apis/:group/:version/namespaces/:ns/:plural'

  const kind = (ctx: RouteContext): KindDefinition => {
    const def = registry.resolve(ctx.params.group ?? '', ctx.params.version ?? '', ctx.params.plural ?? '')
    if (ctx.params.ns !== undefined) validateNamespace(ctx.params.ns, 'namespace')
    return def
  }
  const writer = (ctx: RouteContext, def: KindDefinition, verb: string): void => {
    const actor = auth.check(ctx.req, true)
    ctx.log.info({ actor, verb, kind: def.kind, ns: ctx.params.ns, name: ctx.params.name }, 'resource write')
  }
  const body = async (req: IncomingMessage): Promise<unknown> => {
    const buf = await readBody(req, maxBody)
    try {
      return JSON.parse(buf.toString('utf8'))
    } catch {
      throw new ShoalError('BAD_REQUEST', 'request body is not valid JSON')
    }
  }
  const named = (ctx: RouteContext, input: unknown): ResourceInput => {
    if (input === null || typeof input !== 'object' || Array.isArray(input))
      throw new ShoalError('INVALID', '(object): must be a JSON object')
    const obj = input as ResourceInput
    if (obj.metadata?.name !== undefined && obj.metadata.name !== ctx.params.name)
      throw new ShoalError(
        'INVALID',
        `metadata.name: "${String(obj.metadata.name).slice(0, 80)}" is not the name in the path`,
      )
    return { ...obj, metadata: { ...obj.metadata, name: ctx.params.name as string } }
  }

  const listOrWatch = async (ctx: RouteContext): Promise<void> => {
    const def = kind(ctx)
    auth.check(ctx.req, false)
    const q = ctx.query
    const selector = parseSelector(def, {
      labelSelector: q.get('labelSelector'),
      fieldSelector: q.get('fieldSelector'),
    })
    const namespace = ctx.params.ns
    if (q.get('watch') === 'true' || q.get('watch') === '1') {
      if (watchers >= deps.watch.maxWatchers)
        throw new ShoalError('TOO_MANY_REQUESTS', `${watchers} watches are open already (watch.maxWatchers)`)
      const timeoutS = Math.min(
        intParam(q, 'timeoutSeconds', deps.watch.maxTimeoutSeconds),
        deps.watch.maxTimeoutSeconds,
      )
      const stop = new AbortController()
      const onAbort = () => stop.abort()
      ctx.signal.addEventListener('abort', onAbort, { once: true })
      const timer = setTimeout(() => stop.abort(), timeoutS * 1000)
      watchers++
      try {
        const events = await store.watch(def, {
          namespace,
          selector,
          resourceVersion: q.get('resourceVersion') ?? undefined,
          bookmarkIntervalMs: deps.watch.heartbeatMs,
          signal: stop.signal,
        })
        await streamWatch(ctx.res, events, stop, deps.watch, ctx.log)
      } finally {
        watchers--
        clearTimeout(timer)
        ctx.signal.removeEventListener('abort', onAbort)
      }
      return
    }
    const limit = q.has('limit') ? intParam(q, 'limit', MAX_LIST_LIMIT) : undefined
    const list = await store.list(def, {
      namespace,
      selector,
      limit: limit === 0 ? undefined : limit,
      continue: q.get('continue') || undefined,
    })
    sendJson(ctx.res, 200, list)
  }

  router.get('/apis', ({ req, res }) => {
    auth.check(req, false)
    sendJson(res, 200, {
      kind: 'APIResourceList',
      resources: registry
        .kinds()
        .map((k) => ({ apiVersion: apiVersionOf(k), kind: k.kind, plural: k.plural, namespaced: true })),
    })
  })
  router.get('/apis/:group/:version/:plural', listOrWatch)
  router.get(base, listOrWatch)
  router.post(base, async (ctx) => {
    const def = kind(ctx)
    writer(ctx, def, 'create')
    const obj = await store.create(def, ctx.params.ns as string, (await body(ctx.req)) as ResourceInput)
    sendJson(ctx.res, 201, obj)
  })
  router.get(`${base}/:name`, async (ctx) => {
    const def = kind(ctx)
    auth.check(ctx.req, false)
    sendJson(ctx.res, 200, await store.get(def, ctx.params.ns as string, ctx.params.name as string))
  })
  router.get(`${base}/:name/status`, async (ctx) => {
    const def = kind(ctx)
    auth.check(ctx.req, false)
    sendJson(ctx.res, 200, await store.get(def, ctx.params.ns as string, ctx.params.name as string))
  })
  router.put(`${base}/:name`, async (ctx) => {
    const def = kind(ctx)
    writer(ctx, def, 'update')
    sendJson(ctx.res, 200, await store.update(def, ctx.params.ns as string, named(ctx, await body(ctx.req))))
  })
  router.put(`${base}/:name/status`, async (ctx) => {
    const def = kind(ctx)
    writer(ctx, def, 'updateStatus')
    sendJson(
      ctx.res,
      200,
      await store.updateStatus(def, ctx.params.ns as string, named(ctx, await body(ctx.req))),
    )
  })
  const patch = (status: boolean) => async (ctx: RouteContext) => {
    const def = kind(ctx)
    writer(ctx, def, status ? 'patchStatus' : 'patch')
    const type = String(ctx.req.headers['content-type'] ?? '')
      .split(';')[0]
      ?.trim()
    if (type !== 'application/merge-patch+json' && type !== 'application/json')
      throw new ShoalError(
        'BAD_REQUEST',
        `PATCH takes application/merge-patch+json (a JSON merge patch), not "${type?.slice(0, 80)}"`,
      )
    const obj = await store.patch(
      def,
      ctx.params.ns as string,
      ctx.params.name as string,
      await body(ctx.req),
      { status },
    )
    sendJson(ctx.res, 200, obj)
  }
  router.patch(`${base}/:name`, patch(false))
  router.patch(`${base}/:name/status`, patch(true))
  router.delete(`${base}/:name`, async (ctx) => {
    const def = kind(ctx)
    writer(ctx, def, 'delete')
    const ns = ctx.params.ns as string
    const name = ctx.params.name as string
    const opts =
      ctx.req.headers['content-length'] && ctx.req.headers['content-length'] !== '0'
        ? await body(ctx.req)
        : {}
    if (def.admitDelete) def.admitDelete(await store.get(def, ns, name))
    const pre =
      (opts as { preconditions?: { resourceVersion?: string; uid?: string } } | null)?.preconditions ?? {}
    const r = await store.delete(def, ns, name, {
      resourceVersion: typeof pre.resourceVersion === 'string' ? pre.resourceVersion : undefined,
      uid: typeof pre.uid === 'string' ? pre.uid : undefined,
    })
    // 202: accepted, finalizers still hold it; 200: gone.
    sendJson(ctx.res, r.deleted ? 200 : 202, r.object)
  })
  mountScale(router, base, kind, writer, body, store, auth)
  return { activeWatchers: () => watchers }
}

/**
 * The `/scale` subresource of kinds that declare one: a Scale object (autoscaling/v1 shape) read
 * from the object; a write of `spec.replicas` (PUT of a Scale, or a merge patch) patches the
 * kind's replica field and nothing else.
 */
function mountScale(
  router: Router,
  base: string,
  kind: (ctx: RouteContext) => KindDefinition,
  writer: (ctx: RouteContext, def: KindDefinition, verb: string) => void,
  body: (req: IncomingMessage) => Promise<unknown>,
  store: ResourceStore,
  auth: TokenAuth,
): void {
  const scaled = (ctx: RouteContext) => {
    const def = kind(ctx)
    if (!def.scale) throw new ShoalError('NOT_FOUND', `${def.plural} have no scale subresource`)
    return { def, scale: def.scale }
  }
  const answer = (obj: Resource, scale: NonNullable<KindDefinition['scale']>) => ({
    apiVersion: 'autoscaling/v1',
    kind: 'Scale',
    metadata: {
      name: obj.metadata.name,
      namespace: obj.metadata.namespace,
      uid: obj.metadata.uid,
      resourceVersion: obj.metadata.resourceVersion,
    },
    spec: { replicas: Number(readPath(obj, scale.specReplicasPath) ?? 0) },
    status: { replicas: Number(readPath(obj, scale.statusReplicasPath) ?? 0), selector: scale.selector(obj) },
  })
  router.get(`${base}/:name/scale`, async (ctx) => {
    const { def, scale } = scaled(ctx)
    auth.check(ctx.req, false)
    sendJson(
      ctx.res,
      200,
      answer(await store.get(def, ctx.params.ns as string, ctx.params.name as string), scale),
    )
  })
  const write = async (ctx: RouteContext) => {
    const { def, scale } = scaled(ctx)
    writer(ctx, def, 'scale')
    const input = (await body(ctx.req)) as { spec?: { replicas?: unknown } } | null
    const replicas = input?.spec?.replicas
    if (typeof replicas !== 'number' || !Number.isSafeInteger(replicas) || replicas < 0)
      throw new ShoalError('INVALID', 'spec.replicas: must be a whole number ≥ 0')
    const obj = await store.patch(
      def,
      ctx.params.ns as string,
      ctx.params.name as string,
      nestedPatch(scale.specReplicasPath, replicas),
    )
    sendJson(ctx.res, 200, answer(obj, scale))
  }
  router.put(`${base}/:name/scale`, write)
  router.patch(`${base}/:name/scale`, write)
}

function readPath(obj: unknown, path: string): unknown {
  let at: unknown = obj
  for (const key of path.split('.')) {
    if (at === null || typeof at !== 'object') return undefined
    at = (at as Record<string, unknown>)[key]
  }
  return at
}

/** `{ spec: { replicas: 3 } }` from `spec.replicas` and 3: a merge patch of one field. */
function nestedPatch(path: string, value: unknown): unknown {
  return path
    .split('.')
    .reverse()
    .reduce<unknown>((inner, key) => ({ [key]: inner }), value)
}

function intParam(q: URLSearchParams, name: string, max: number): number {
  const v = q.get(name)
  if (v === null || v === '') return max
  if (!/^[0-9]{1,9}$/.test(v)) throw new ShoalError('INVALID', `${name}: must be a whole number`)
  return Math.min(Number(v), max)
}
