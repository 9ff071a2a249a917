/**
 * One error type for the whole code base. Callers branch on `code`, never on messages;
 * the HTTP layer maps codes to statuses and clients rebuild the same typed error from
 * `{ code, message }` bodies, so a failure keeps its meaning across process boundaries.
 */

export const ErrorCodes = {
  BAD_REQUEST: 400,
  INVALID_TAG: 400,
  INVALID_DIGEST: 400,
  INVALID_PATH: 400,
  INVALID_RANGE: 416,
  DIGEST_MISMATCH: 400,
  SIZE_MISMATCH: 400,
  BAD_ANNOUNCE: 400,
  BAD_METAINFO: 400,
  /** A directory manifest (the blob a directory tag points at) that is not valid or names an unsafe path. */
  BAD_MANIFEST: 400,
  /** A OneX node image tarball that is not a valid image: broken tar, an unsafe entry, a missing or invalid manifest.json. */
  BAD_IMAGE: 400,
  NOT_FOUND: 404,
  TAG_NOT_FOUND: 404,
  BLOB_NOT_FOUND: 404,
  UPLOAD_NOT_FOUND: 404,
  /** A request without the bearer token a configured token requires, or with a wrong one (the resource API). */
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  /** An internal origin-to-origin request named an origin that is not a member of the ring. */
  NOT_RING_MEMBER: 403,
  METHOD_NOT_ALLOWED: 405,
  REQUEST_TIMEOUT: 408,
  TAG_CONFLICT: 409,
  UPLOAD_CONFLICT: 409,
  /** Another upload of the same digest is running; the client asks again (it dedupes once that commits). */
  UPLOAD_IN_PROGRESS: 409,
  /** A blob that tags still point at is not deleted. */
  BLOB_IN_USE: 409,
  /** A replica was offered to an origin that does not own the digest in its view of the ring. */
  NOT_OWNER: 409,
  /** A GC delete refused: the blob was pushed again after its last tag was removed. */
  BLOB_RECOMMITTED: 409,
  /** A resource update or delete whose metadata.resourceVersion is not the stored one: read again, retry. */
  CONFLICT: 409,
  /** A watch or list continue from a resourceVersion older than the store's history window: list again. */
  GONE: 410,
  /** A resource that fails validation (name, labels, sizes, its kind's spec schema). */
  INVALID: 422,
  PAYLOAD_TOO_LARGE: 413,
  TOO_MANY_REQUESTS: 429,
  /** The disk (or quota) cannot hold the data: refused before writing, or ENOSPC/EDQUOT while writing. */
  INSUFFICIENT_STORAGE: 507,
  CONFIG_INVALID: 500,
  INTERNAL: 500,
  BACKEND_ERROR: 502,
  /** The blob's bytes do not match its digest in the backend (the origin refuses to serve it). */
  BLOB_CORRUPT: 502,
  /**
   * Another daemon answered with something we cannot use: invalid JSON or bencode, a field out of
   * range, an answer larger than the client reads. Its answer is broken, not a "no".
   */
  UPSTREAM_ERROR: 502,
  /**
   * Another daemon said no without a Shoal `{ code, message }` body: an unexpected non-2xx status
   * (404 and 503 map to NOT_FOUND and UNAVAILABLE instead) or a tracker's bencoded 'failure reason'
   * (details.reason).
   */
  UPSTREAM_REFUSED: 502,
  UNAVAILABLE: 503,
  /** The CSGW (FTP storage gateway) cannot be reached, dropped the connection, or said "not now" (4xx). */
  CSGW_UNAVAILABLE: 503,
  /** The CSGW refused the login (FTP 530): wrong or missing credentials. */
  CSGW_AUTH: 502,
  /** The CSGW refused an operation for good (an FTP 5xx other than 530/550: permissions, a bad name). */
  CSGW_REFUSED: 502,
  TIMEOUT: 504,
  ABORTED: 499,
  ALREADY_EXISTS: 409,
  /**
   * `shoal job run --wait` (or `rerun --wait`): some targets of the job failed, for different
   * reasons (when they all failed with one code, that code is raised instead). Never on the wire.
   */
  JOB_FAILED: 500,
  USAGE: 400,
  IO_ERROR: 500,
  TORRENT_ERROR: 500,
  PEER_PROTOCOL: 400,
} as const

export type ErrorCode = keyof typeof ErrorCodes

export interface ShoalErrorOptions {
  cause?: unknown
  details?: Record<string, unknown>
  status?: number
}

export class ShoalError extends Error {
  readonly code: ErrorCode
  readonly details: Record<string, unknown> | undefined
  readonly status: number

  constructor(code: ErrorCode, message: string, opts: ShoalErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'ShoalError'
    this.code = code
    this.details = opts.details
    this.status = opts.status ?? ErrorCodes[code]
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details }
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ErrorCodes, value)
}

export function isShoalError(err: unknown, code?: ErrorCode): err is ShoalError {
  return err instanceof ShoalError && (code === undefined || err.code === code)
}

/** Wraps anything thrown into a ShoalError, keeping ShoalErrors as they are. */
export function toShoalError(err: unknown, fallback: ErrorCode = 'INTERNAL'): ShoalError {
  if (err instanceof ShoalError) return err
  // AbortSignal.timeout() rejects with a TimeoutError: the deadline passed, nobody cancelled.
  if (isTimeoutError(err)) return new ShoalError('TIMEOUT', 'operation timed out', { cause: err })
  if (isAbortError(err)) return new ShoalError('ABORTED', 'operation aborted', { cause: err })
  const message = err instanceof Error ? err.message : String(err)
  return new ShoalError(fallback, message, { cause: err })
}

export function isAbortError(err: unknown): boolean {
  return (
    err instanceof Error && (err.name === 'AbortError' || (err as NodeJS.ErrnoException).code === 'ABORT_ERR')
  )
}

/** The reason an AbortSignal.timeout() signal carries (a DOMException named TimeoutError). */
export function isTimeoutError(err: unknown): boolean {
  return err instanceof Error && err.name === 'TimeoutError'
}

/** The errno code of a Node system error (ENOENT, EEXIST...), or undefined. */
export function errnoCode(err: unknown): string | undefined {
  return err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined
}
