/**
 * Retries and error mapping for S3 requests. The SDK's own retry loop is switched off
 * (maxAttempts: 1 on the client) so there is one loop, this one: it knows our AbortSignal,
 * our attempt budget, and can re-send a multipart part it still holds in memory.
 */
import { isAbortError, isShoalError, isTimeoutError, ShoalError } from '../../errors/index.js'

export interface RetryOptions {
  attempts: number
  baseMs: number
  signal?: AbortSignal | undefined
  /** For the message when the attempts run out, e.g. "put bucket/key". */
  what: string
}

const MAX_DELAY_MS = 20_000

/** Error names S3 (and S3-compatible servers) use for "slow down / try again". */
const THROTTLING = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
])

/** Socket-level failures worth another attempt (the request may not have reached S3 at all). */
const NETWORK = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
])

interface SdkError {
  name?: string
  code?: string
  message?: string
  $metadata?: { httpStatusCode?: number }
  $retryable?: unknown
}

export function httpStatus(err: unknown): number | undefined {
  return (err as SdkError | undefined)?.$metadata?.httpStatusCode
}

export function isNotFound(err: unknown): boolean {
  const e = err as SdkError
  return (
    e?.name === 'NoSuchKey' ||
    e?.name === 'NotFound' ||
    (httpStatus(err) === 404 && e?.name !== 'NoSuchBucket')
  )
}

/** The socket-level failure behind an error (ECONNREFUSED, TimeoutError...), if that is what it is. */
export function networkFailure(err: unknown): string | undefined {
  const code = (err as SdkError | undefined)?.code
  if (code && NETWORK.has(code)) return code
  return isSdkTimeout(err) ? 'timed out' : undefined
}

export function isRetryable(err: unknown): boolean {
  if (isShoalError(err) || isAbortError(err)) return false
  const e = err as SdkError
  const status = httpStatus(err)
  if (status !== undefined && (status >= 500 || status === 429)) return true
  if (e?.$retryable) return true
  if (e?.name && THROTTLING.has(e.name)) return true
  if (isSdkTimeout(err)) return true
  if (e?.code && NETWORK.has(e.code)) return true
  return false
}

/** Runs `op` until it succeeds, fails for good, runs out of attempts or `signal` aborts. */
export async function withRetry<T>(op: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    if (opts.signal?.aborted) throw abortedError(opts.signal, opts.what)
    try {
      return await op(attempt)
    } catch (err) {
      if (opts.signal?.aborted) throw abortedError(opts.signal, opts.what, err)
      if (attempt >= opts.attempts || !isRetryable(err)) throw err
      // Full jitter (uniform in 0..cap): retries from many origins spread out instead of
      // hitting a throttled bucket again in lockstep.
      const cap = Math.min(MAX_DELAY_MS, opts.baseMs * 2 ** (attempt - 1))
      await sleep(Math.random() * cap, opts.signal)
    }
  }
}

/** ABORTED, or TIMEOUT when the signal was an AbortSignal.timeout() that fired (nobody cancelled). */
export function abortedError(signal: AbortSignal, what: string, cause?: unknown): ShoalError {
  return isTimeoutError(signal.reason)
    ? new ShoalError('TIMEOUT', `s3 ${what}: timed out`, { cause: cause ?? signal.reason })
    : new ShoalError('ABORTED', `s3 ${what}: aborted`, { cause: cause ?? signal.reason })
}

/** The HTTP handler's connect/socket timeout (not an AbortSignal.timeout(), which is a DOMException). */
function isSdkTimeout(err: unknown): boolean {
  return err instanceof Error && err.name === 'TimeoutError' && !(err instanceof DOMException)
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}

/**
 * Turns an SDK error into a ShoalError whose message names the bucket, the key and what S3
 * said, with any credential value blanked out (`secrets`), and a hint for the common causes.
 */
export function mapS3Error(err: unknown, what: string, secrets: readonly string[] = []): ShoalError {
  if (isShoalError(err)) return err
  if (isTimeoutError(err) && !isSdkTimeout(err))
    return new ShoalError('TIMEOUT', `s3 ${what}: timed out`, { cause: err })
  if (isAbortError(err)) return new ShoalError('ABORTED', `s3 ${what}: aborted`, { cause: err })
  const e = err as SdkError
  const status = httpStatus(err)
  const name = e?.name && e.name !== 'Error' ? e.name : (e?.code ?? 'Error')
  let detail = String(e?.message ?? err)
  for (const s of secrets) if (s) detail = detail.split(s).join('[redacted]')
  const hint = hintFor(name, e?.code, status)
  const shown = `${name}${status ? ` (HTTP ${status})` : ''}: ${detail}${hint ? ` (${hint})` : ''}`
  return new ShoalError('BACKEND_ERROR', `s3 ${what}: ${shown}`, {
    cause: err,
    details: { s3Error: name, status },
  })
}

function hintFor(name: string, code: string | undefined, status: number | undefined): string {
  if (name === 'NoSuchBucket') return 'the bucket does not exist'
  if (name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' || name === 'InvalidToken')
    return 'check the S3 credentials'
  if (name === 'AccessDenied' || name === 'Forbidden' || status === 403)
    return 'access denied: check the credentials and the bucket policy'
  if ((code && NETWORK.has(code)) || name === 'TimeoutError') return 'cannot reach the S3 endpoint'
  return ''
}
