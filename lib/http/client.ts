/**
 * The HTTP client every `client/` folder builds on (undici). Non-2xx answers are turned back
 * into the ShoalError the server raised, from its `{ code, message }` body. A failure below
 * HTTP names the daemon and its address, since the user has to go and look at that daemon:
 * refused or reset connections are UNAVAILABLE ("the agent at 127.0.0.1:16002 closed the
 * connection (ECONNRESET)..."), a deadline (headers timeout, an AbortSignal.timeout()) is
 * TIMEOUT, and only a caller's own cancellation is ABORTED.
 */
import { Agent, type Dispatcher, request } from 'undici'
import {
  errnoCode,
  isAbortError,
  isErrorCode,
  isShoalError,
  isTimeoutError,
  ShoalError,
} from '../errors/index.js'

export interface HttpClientOptions {
  /** Name of the service, for error messages ("build-index"). */
  name: string
  /** Default per-request timeout for headers, ms. */
  timeoutMs?: number
  dispatcher?: Dispatcher
  /** Sent with every request (e.g. an Authorization header); a request's own headers win. */
  headers?: Record<string, string>
}

export interface RequestOptions {
  body?: Buffer | string | NodeJS.ReadableStream | null
  headers?: Record<string, string>
  signal?: AbortSignal
  /** Statuses that are returned instead of thrown (e.g. [404] for existence checks). */
  accept?: number[]
  timeoutMs?: number
  /** json() and buffer(): the largest body read (UPSTREAM_ERROR past it); DEFAULT_RESPONSE_LIMIT. */
  maxBytes?: number
}

export type ResponseData = Dispatcher.ResponseData

const sharedAgent = new Agent({ keepAliveTimeout: 4_000, connections: 64 })

const MAX_ERROR_BODY = 64 << 10
/**
 * Largest body json() and buffer() read by default. Every answer a Shoal client reads whole is
 * small (tags, lists, metainfo up to 16 MiB); a daemon gone wrong or a hostile one must not
 * make its client hold gigabytes.
 */
export const DEFAULT_RESPONSE_LIMIT = 16 << 20

export class HttpClient {
  readonly baseUrl: string
  /** What the daemon is ("agent", "build-index"), for messages. */
  readonly name: string
  private readonly timeoutMs: number
  private readonly dispatcher: Dispatcher
  private readonly headers: Record<string, string> | undefined

  constructor(baseUrl: string, opts: HttpClientOptions) {
    this.baseUrl = normaliseBase(baseUrl)
    this.name = opts.name
    this.timeoutMs = opts.timeoutMs ?? 30_000
    this.dispatcher = opts.dispatcher ?? sharedAgent
    this.headers = opts.headers
  }

  /** Sends a request; the caller must consume or dump `body` of the returned response. */
  async request(method: string, path: string, opts: RequestOptions = {}): Promise<ResponseData> {
    const url = this.baseUrl + path
    let res: ResponseData
    try {
      res = await request(url, {
        method: method as Dispatcher.HttpMethod,
        body: (opts.body ?? null) as Dispatcher.DispatchOptions['body'],
        headers: this.headers ? { ...this.headers, ...opts.headers } : opts.headers,
        signal: opts.signal,
        dispatcher: this.dispatcher,
        headersTimeout: opts.timeoutMs ?? this.timeoutMs,
        bodyTimeout: 0,
      })
    } catch (err) {
      throw this.transportError(err, method, path, opts.signal, opts.timeoutMs ?? this.timeoutMs)
    }
    if (res.statusCode < 300 || opts.accept?.includes(res.statusCode)) return res
    throw (await errorFromResponse(res, this.name, method, path)).error
  }

  /**
   * A failure without an HTTP answer (connecting, waiting, or reading a body: callers that
   * stream a response body pass its errors here too), as a ShoalError naming this daemon.
   */
  transportError(
    err: unknown,
    method: string,
    path: string,
    signal?: AbortSignal,
    timeoutMs = this.timeoutMs,
  ): ShoalError {
    if (err instanceof ShoalError) return err
    const where = `the ${this.name} at ${hostOf(this.baseUrl)}`
    const what = `${method} ${shortPath(path)}`
    if (isTimeoutError(err) || (signal?.aborted && isTimeoutError(signal.reason)))
      return new ShoalError('TIMEOUT', `${where} had not answered ${what} when the time ran out`, {
        cause: err,
      })
    if (isAbortError(err) || signal?.aborted)
      return new ShoalError('ABORTED', `${this.name} request aborted`, { cause: err })
    const code = errnoCode(err) ?? (err as Error).name
    if (code === 'UND_ERR_HEADERS_TIMEOUT')
      return new ShoalError('TIMEOUT', `${where} did not answer ${what} within ${seconds(timeoutMs)}`, {
        cause: err,
      })
    if (code === 'ECONNREFUSED')
      return new ShoalError(
        'UNAVAILABLE',
        `cannot reach ${where} (ECONNREFUSED: nothing listens there); is it running?`,
        { cause: err },
      )
    if (DROPPED.has(String(code)))
      return new ShoalError(
        'UNAVAILABLE',
        `${where} closed the connection during ${what} (${code}); is it running? see its log`,
        { cause: err },
      )
    return new ShoalError('UNAVAILABLE', `cannot reach ${where} (${code})`, { cause: err })
  }

  async json<T>(method: string, path: string, opts: RequestOptions & { json?: unknown } = {}): Promise<T> {
    const body = opts.json === undefined ? opts.body : JSON.stringify(opts.json)
    const headers =
      opts.json === undefined ? opts.headers : { 'content-type': 'application/json', ...opts.headers }
    const res = await this.request(method, path, { ...opts, body, headers })
    const text = (await this.readBody(res, method, path, opts)).toString('utf8')
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
    return this.readBody(res, method, path, opts)
  }

  /** The whole body of `res`, at most opts.maxBytes of it. */
  async readBody(
    res: ResponseData,
    method: string,
    path: string,
    opts: RequestOptions = {},
  ): Promise<Buffer> {
    const limit = opts.maxBytes ?? DEFAULT_RESPONSE_LIMIT
    const what = `${this.name}'s answer to ${method} ${shortPath(path)}`
    try {
      return await readLimited(res, limit, what)
    } catch (err) {
      throw isShoalError(err) ? err : this.transportError(err, method, path, opts.signal)
    }
  }
}

/**
 * Reads a response body whole, refusing one larger than `limit` (declared or as it arrives)
 * with UPSTREAM_ERROR; `what` names the answer in the message. The body is released either way.
 */
export async function readLimited(res: ResponseData, limit: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) {
    release(res)
    throw new ShoalError('UPSTREAM_ERROR', `${what} is ${declared} bytes, more than the limit of ${limit}`)
  }
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length
      if (size > limit) throw new ShoalError('UPSTREAM_ERROR', `${what} exceeds the limit of ${limit} bytes`)
      chunks.push(chunk as Buffer)
    }
  } finally {
    release(res)
  }
  return Buffer.concat(chunks, size)
}

/** Drops a response body we will not read (on) any further; its abort is not an error of ours. */
function release(res: ResponseData): void {
  if (res.body.destroyed) return
  res.body.on('error', () => {})
  res.body.destroy()
}

/** What a non-2xx answer stands for; `coded` when its body was one of our `{ code, message }` errors. */
export interface AnswerError {
  error: ShoalError
  coded: boolean
}

/**
 * Reads (at most 64 KiB of) a non-2xx answer's body and decodes it with errorFromBody. The
 * body is released either way. `name` names the daemon in the message ("build-index",
 * "tracker at 127.0.0.1:15003").
 */
export async function errorFromResponse(
  res: ResponseData,
  name: string,
  method: string,
  path: string,
): Promise<AnswerError> {
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
    release(res)
  }
  return errorFromBody(res.statusCode, text, name, method, path)
}

/**
 * The one decoder of error answers: a `{ code, message, details? }` body becomes the ShoalError
 * the other daemon raised (keeping its status); anything else is classified by status alone:
 * 404 NOT_FOUND, 503 UNAVAILABLE, every other one UPSTREAM_REFUSED ("<name> answered 500 to
 * GET /x"). Garbage in a 2xx answer is UPSTREAM_ERROR, raised by whoever parses it.
 */
export function errorFromBody(
  status: number,
  text: string,
  name: string,
  method: string,
  path: string,
): AnswerError {
  try {
    const parsed = JSON.parse(text) as {
      code?: unknown
      message?: unknown
      details?: Record<string, unknown>
    }
    if (isErrorCode(parsed.code) && typeof parsed.message === 'string') {
      const details = isPlainObject(parsed.details) ? parsed.details : undefined
      return { error: new ShoalError(parsed.code, parsed.message, { status, details }), coded: true }
    }
  } catch {
    // Not one of our JSON errors: classified by status below.
  }
  const code = status === 404 ? 'NOT_FOUND' : status === 503 ? 'UNAVAILABLE' : 'UPSTREAM_REFUSED'
  const error = new ShoalError(code, `${name} answered ${status} to ${method} ${shortPath(path)}`, {
    status,
  })
  return { error, coded: false }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** undici's and the kernel's ways of saying the other end went away mid-exchange. */
const DROPPED = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])

function hostOf(base: string): string {
  try {
    return new URL(base).host
  } catch {
    return base
  }
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`
}

function normaliseBase(base: string): string {
  const withScheme = /^https?:\/\//.test(base) ? base : `http://${base}`
  return withScheme.replace(/\/+$/, '')
}

/** The path as people read it (percent-decoded: `sha256:…`, not `sha256%3A…`), cut at 200. */
function shortPath(path: string): string {
  let shown = path
  try {
    shown = decodeURIComponent(path)
  } catch {
    // Not valid percent-encoding: show it as sent.
  }
  return shown.length > 200 ? `${shown.slice(0, 200)}…` : shown
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
