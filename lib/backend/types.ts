/**
 * The storage-backend interface: where blobs and tags live durably (a local folder by default,
 * or S3). Keys are '/'-separated paths of non-empty segments chosen by Shoal itself (never
 * raw user input); every implementation must pass test/contract/backend.contract.ts.
 */
import type { Readable } from 'node:stream'
import { ShoalError } from '../errors/index.js'

export const MAX_KEY_BYTES = 1024

export interface ObjectStat {
  size: number
}

export interface ListPage {
  keys: string[]
  /** Pass as `after` to get the next page; absent on the last page. */
  next?: string
}

export interface Backend {
  readonly kind: string
  /** Size of the object, or undefined when it does not exist. */
  stat(key: string, signal?: AbortSignal): Promise<ObjectStat | undefined>
  /** Streams the object (optionally bytes start..end inclusive); BLOB_NOT_FOUND when absent. */
  get(key: string, opts?: { start?: number; end?: number; signal?: AbortSignal }): Promise<Readable>
  /** Stores the object atomically: readers see the old object or the whole new one, never a part. */
  put(key: string, body: Readable | Buffer, opts?: { size?: number; signal?: AbortSignal }): Promise<void>
  /** Removes the object; removing an absent key is not an error. */
  delete(key: string, signal?: AbortSignal): Promise<void>
  /** Keys starting with `prefix`, in ascending byte order, after `after`, at most `limit`. */
  list(prefix: string, opts?: { after?: string; limit?: number; signal?: AbortSignal }): Promise<ListPage>
  /**
   * A cheap start-up probe for backends that can be misconfigured remotely (S3: a missing
   * bucket, wrong credentials, an unreachable endpoint): rejects with one line naming the problem.
   */
  check?(signal?: AbortSignal): Promise<void>
}

/** Rejects keys no backend should ever see; shared by every implementation. */
export function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new ShoalError('BAD_REQUEST', 'backend key is empty')
  if (Buffer.byteLength(key) > MAX_KEY_BYTES)
    throw new ShoalError('BAD_REQUEST', `backend key longer than ${MAX_KEY_BYTES} bytes`)
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) throw new ShoalError('BAD_REQUEST', 'backend key contains control characters')
  }
  for (const seg of key.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') {
      throw new ShoalError(
        'BAD_REQUEST',
        `backend key "${key.slice(0, 100)}" has an empty, "." or ".." segment`,
      )
    }
  }
}

export const DEFAULT_LIST_LIMIT = 1000
