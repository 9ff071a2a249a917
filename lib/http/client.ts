/**
 * The HTTP client every `client/` folder builds on (undici). Non-2xx answers are turned back
 * into the ShoalError the server raised, from its `{ code, message }` body; a peer that cannot
 * be reached becomes UNAVAILABLE naming the address.
 */
import { Agent, type Dispatcher, request } from 'undici'
import { errnoCode, isAbortError, isErrorCode, ShoalError } from '../errors/index.js'

export interface HttpClientOptions {
  /** Name of the service, for error messages ("build-index"). */
  name: string
  /** Default per-request timeout for headers, ms. */
  timeoutMs?: number
  dispatcher?: Dispatcher
}

export interface RequestOptions {
  body?: Buffer | string | NodeJS.ReadableStream | null
  headers?: Record<string, string>
  signal?: AbortSignal
  /** Statuses that are returned instead of thrown (e.g. [404] for existence checks). */
  accept?: number[]
  timeoutMs?: number
}

export type ResponseData = Dispatcher.ResponseData

const sharedAgent = new Agent({ keepAliveTimeout: 4_000, connections: 64 })

const MAX_ERROR_BODY = 64 << 10

export class HttpClient {
  readonly baseUrl: string
  private readonly name: string
  private readonly timeoutMs: number
  private readonly dispatcher: Dispatcher

  constructor(baseUrl: string, opts: HttpClientOptions) {
    this.baseUrl = normaliseBase(baseUrl)
    this.name = opts.name
    this.timeoutMs = opts.timeoutMs ?? 30_000
    this.dispatcher = opts.dispatcher ?? sharedAgent
  }

  /** Sends a request; the caller must consume or dump `body` of the returned response. */
  async request(method: string, path: string, opts: RequestOptions = {}): Promise<ResponseData> {
    const url = this.baseUrl + path
    let res: ResponseData
    try {
      res = await request(url, {
        method: method as Dispatcher.HttpMethod,
        body: (opts.body ?? null) as Dispatcher.DispatchOptions['body'],
        headers: opts.headers,
        signal: opts.signal,
        dispatcher: this.dispatcher,
        headersTimeout: opts.timeoutMs ?? this.timeoutMs,
        bodyTimeout: 0,
      })
    } catch (err) {
      if (isAbortError(err) || opts.signal?.aborted)
        throw new ShoalError('ABORTED', `${this.name} request aborted`, { cause: err })
      const code = errnoCode(err) ?? (err as Error).name
      if (code === 'UND_ERR_HEADERS_TIMEOUT') {
        throw new ShoalError(
          'TIMEOUT',
          `${this.name} at ${this.baseUrl} did not answer ${method} ${shortPath(path)} in time`,
          { cause: err },
        )
      }
      throw new ShoalError('UNAVAILABLE', `cannot reach ${this.name} at ${this.baseUrl}: ${code}`, {
        cause: err,
      })
    }
    if (res.statusCode < 300 || opts.accept?.includes(res.statusCode)) return res
    throw await errorFromResponse(res, this.name, method, path)
  }

  async json<T>(method: string, path: string, opts: RequestOptions & { json?: unknown } = {}): Promise<T> {
    const body = opts.json === undefined ? opts.body : JSON.stringify(opts.json)
    const headers =
      opts.json === undefined ? opts.headers : { 'content-type': 'application/json', ...opts.headers }
    const res = await this.request(method, path, { ...opts, body, headers })
    const text = await res.body.text()
    if (!text) return undefined as T
    try {
      return JSON.parse(text) as T
    } catch (err) {
      throw new ShoalError(
        'UPSTREAM_ERROR',
        `${this.name} sent invalid JSON for ${method} ${shortPath(path)}`,
        { cause: err },
      )
    }
  }

  /** Request whose body is ignored; returns the status. */
  async status(method: string, path: string, opts: RequestOptions = {}): Promise<number> {
    const res = await this.request(method, path, opts)
    await res.body.dump()
    return res.statusCode
  }

  async buffer(method: string, path: string, opts: RequestOptions = {}): Promise<Buffer> {
    const res = await this.request(method, path, opts)
    return Buffer.from(await res.body.arrayBuffer())
  }
}

async function errorFromResponse(
  res: ResponseData,
  name: string,
  method: string,
  path: string,
): Promise<ShoalError> {
  let text = ''
  try {
    let size = 0
    const chunks: Buffer[] = []
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length
      if (size > MAX_ERROR_BODY) break
      chunks.push(chunk as Buffer)
    }
    text = Buffer.concat(chunks).toString('utf8')
  } catch {
    // The body is only used to explain the error; the status alone still says what happened.
  } finally {
    res.body.destroy()
  }
  try {
    const parsed = JSON.parse(text) as {
      code?: unknown
      message?: unknown
      details?: Record<string, unknown>
    }
    if (isErrorCode(parsed.code) && typeof parsed.message === 'string') {
      return new ShoalError(parsed.code, parsed.message, { status: res.statusCode, details: parsed.details })
    }
  } catch {
    // Not one of our JSON errors: fall through to a generic one.
  }
  const code =
    res.statusCode === 404 ? 'NOT_FOUND' : res.statusCode === 503 ? 'UNAVAILABLE' : 'UPSTREAM_ERROR'
  return new ShoalError(code, `${name} answered ${res.statusCode} to ${method} ${shortPath(path)}`, {
    status: res.statusCode,
  })
}

function normaliseBase(base: string): string {
  const withScheme = /^https?:\/\//.test(base) ? base : `http://${base}`
  return withScheme.replace(/\/+$/, '')
}

function shortPath(path: string): string {
  return path.length > 200 ? `${path.slice(0, 200)}…` : path
}

/** Builds a path with every interpolated value percent-encoded as one segment. */
export function urlPath(
  strings: TemplateStringsArray,
  ...values: Array<string | number | { toString(): string }>
): string {
  let out = strings[0] ?? ''
  for (let i = 0; i < values.length; i++)
    out += encodeURIComponent(String(values[i])) + (strings[i + 1] ?? '')
  return out
}
