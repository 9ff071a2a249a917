/**
 * A client of the resource API for one kind: list/get/create/update/updateStatus/patch/delete,
 * and watch() that keeps going: after a dropped connection it resumes from the last
 * resourceVersion it saw (BOOKMARKs included), and when that is too old (410, or an ERROR
 * event GONE) it lists again and emits what changed meanwhile (ADDED/MODIFIED for what is
 * there, DELETED for what it knew and is gone), then watches from the list.
 */
import { isShoalError, ShoalError, toShoalError } from '../../errors/index.js'
import { HttpClient, type RequestOptions } from '../../http/index.js'
import type { KindRef, Resource, ResourceInput, ResourceList, WatchEvent } from '../types.js'

export interface ApiClientOptions {
  /** Read from a file by the caller; sent as `Authorization: Bearer`. */
  token?: string
  timeoutMs?: number
}

export interface ClientWatchOptions {
  namespace?: string
  labelSelector?: string
  fieldSelector?: string
  /** Start after this resourceVersion; default: the current objects first (as ADDED). */
  resourceVersion?: string
  signal?: AbortSignal
  /** Pause before reconnecting after a drop (ms). */
  retryMs?: number
  /** Called when the connection dropped and the watch resumes (for logs and tests). */
  onReconnect?: (err: ShoalError) => void
}

const MAX_LINE_BYTES = 2 << 20

export class ResourceClient<Spec = unknown, Status = unknown> {
  private readonly http: HttpClient

  constructor(
    baseUrl: string,
    private readonly kind: KindRef,
    private readonly opts: ApiClientOptions = {},
  ) {
    this.http = new HttpClient(baseUrl, { name: 'apiserver', timeoutMs: opts.timeoutMs })
  }

  private path(namespace: string | undefined, name?: string, sub?: string): string {
    const g = encodeURIComponent(this.kind.group)
    const root =
      namespace === undefined
        ? `/apis/${g}/${this.kind.version}/${this.kind.plural}`
        : `/apis/${g}/${this.kind.version}/namespaces/${encodeURIComponent(namespace)}/${this.kind.plural}`
    return root + (name === undefined ? '' : `/${encodeURIComponent(name)}`) + (sub ? `/${sub}` : '')
  }

  private async call<T>(
    method: string,
    path: string,
    body?: unknown,
    extra: RequestOptions = {},
  ): Promise<T> {
    const headers: Record<string, string> = { ...(extra.headers ?? {}) }
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`
    if (body !== undefined) headers['content-type'] ??= 'application/json'
    const res = await this.http.request(method, path, {
      ...extra,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    return (await res.body.json()) as T
  }

  list(
    namespace?: string,
    q: { labelSelector?: string; fieldSelector?: string; limit?: number; continue?: string } = {},
  ) {
    const params = new URLSearchParams()
    for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '') params.set(k, String(v))
    const qs = params.size > 0 ? `?${params}` : ''
    return this.call<ResourceList<Resource<Spec, Status>>>('GET', this.path(namespace) + qs)
  }
  get(namespace: string, name: string) {
    return this.call<Resource<Spec, Status>>('GET', this.path(namespace, name))
  }
  create(namespace: string, obj: ResourceInput<Spec, Status>) {
    return this.call<Resource<Spec, Status>>('POST', this.path(namespace), obj)
  }
  update(namespace: string, obj: ResourceInput<Spec, Status>) {
    return this.call<Resource<Spec, Status>>('PUT', this.path(namespace, obj.metadata.name), obj)
  }
  updateStatus(namespace: string, obj: ResourceInput<Spec, Status>) {
    return this.call<Resource<Spec, Status>>('PUT', this.path(namespace, obj.metadata.name, 'status'), obj)
  }
  patch(namespace: string, name: string, patch: unknown, opts: { status?: boolean } = {}) {
    return this.call<Resource<Spec, Status>>(
      'PATCH',
      this.path(namespace, name, opts.status ? 'status' : undefined),
      patch,
      {
        headers: { 'content-type': 'application/merge-patch+json' },
      },
    )
  }
  delete(namespace: string, name: string, preconditions?: { resourceVersion?: string; uid?: string }) {
    return this.call<Resource<Spec, Status>>(
      'DELETE',
      this.path(namespace, name),
      preconditions ? { preconditions } : undefined,
    )
  }

  /** Events until `signal` aborts; survives drops and 410s as described above. */
  async *watch(opts: ClientWatchOptions = {}): AsyncGenerator<WatchEvent<Resource<Spec, Status>>> {
    const known = new Map<string, string>() // key → resourceVersion, for the diff after a relist
    const keyOf = (o: Resource) => `${o.metadata.namespace}/${o.metadata.name}`
    let rv = opts.resourceVersion
    while (!opts.signal?.aborted) {
      try {
        if (rv === undefined) {
          const list = await this.list(opts.namespace, {
            labelSelector: opts.labelSelector,
            fieldSelector: opts.fieldSelector,
          })
          const seen = new Set<string>()
          for (const o of list.items) {
            const k = keyOf(o)
            seen.add(k)
            const had = known.get(k)
            known.set(k, o.metadata.resourceVersion)
            if (had !== o.metadata.resourceVersion)
              yield { type: had === undefined ? 'ADDED' : 'MODIFIED', object: o }
          }
          for (const [k] of known)
            if (!seen.has(k)) {
              known.delete(k)
              const [namespace, name] = k.split('/') as [string, string]
              yield { type: 'DELETED', object: { metadata: { namespace, name } } as Resource<Spec, Status> }
            }
          rv = list.metadata.resourceVersion
        }
        for await (const ev of this.stream(rv, opts)) {
          rv = ev.object.metadata.resourceVersion
          if (ev.type === 'BOOKMARK') {
            yield ev
            continue
          }
          if (ev.type === 'DELETED') known.delete(keyOf(ev.object))
          else known.set(keyOf(ev.object), ev.object.metadata.resourceVersion)
          yield ev
        }
      } catch (err) {
        if (opts.signal?.aborted) return
        const e = toShoalError(err)
        if (e.code === 'GONE') rv = undefined
        else if (!['UNAVAILABLE', 'TIMEOUT', 'ABORTED', 'UPSTREAM_ERROR'].includes(e.code)) throw e
        opts.onReconnect?.(e)
        await new Promise((r) => setTimeout(r, opts.retryMs ?? 500))
      }
    }
  }

  /** One watch connection: its events, or a throw (GONE for 410 or an ERROR event). */
  private async *stream(
    rv: string,
    opts: ClientWatchOptions,
  ): AsyncGenerator<WatchEvent<Resource<Spec, Status>>> {
    const params = new URLSearchParams({ watch: 'true', resourceVersion: rv })
    if (opts.labelSelector) params.set('labelSelector', opts.labelSelector)
    if (opts.fieldSelector) params.set('fieldSelector', opts.fieldSelector)
    const headers: Record<string, string> = {}
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`
    const path = `${this.path(opts.namespace)}?${params}`
    const res = await this.http.request('GET', path, { headers, signal: opts.signal })
    let buf = ''
    try {
      for await (const chunk of res.body) {
        buf += (chunk as Buffer).toString('utf8')
        let nl = buf.indexOf('\n')
        while (nl >= 0) {
          const line = buf.slice(0, nl)
          buf = buf.slice(nl + 1)
          nl = buf.indexOf('\n')
          if (line.trim() === '') continue
          const ev = parseEvent(line)
          if ((ev.type as string) === 'ERROR') {
            const o = ev.object as unknown as { code?: string; message?: string }
            throw new ShoalError(o.code === 'GONE' ? 'GONE' : 'UPSTREAM_ERROR', o.message ?? 'watch error')
          }
          yield ev as WatchEvent<Resource<Spec, Status>>
        }
        if (buf.length > MAX_LINE_BYTES)
          throw new ShoalError('UPSTREAM_ERROR', 'a watch event line is too long')
      }
    } catch (err) {
      throw isShoalError(err) ? err : this.http.transportError(err, 'GET', path, opts.signal)
    } finally {
      res.body.destroy()
    }
    throw new ShoalError('UNAVAILABLE', 'the watch connection ended')
  }
}

function parseEvent(line: string): WatchEvent {
  try {
    const ev = JSON.parse(line) as WatchEvent
    if (typeof ev?.type === 'string' && ev.object && typeof ev.object === 'object') return ev
  } catch {}
  throw new ShoalError('UPSTREAM_ERROR', 'the apiserver sent a watch line that is not an event')
}
