/**
 * A backend in front of a real one (the fs backend in these tests) that fails on demand, as an
 * unreachable S3 or a broken mount would: while `down(key)` is true every operation on that key
 * rejects with BACKEND_ERROR. Counts the puts that reached the real backend, and put attempts per key.
 */
import type { Readable } from 'node:stream'
import type { Backend, ListPage, ObjectStat } from '../../lib/backend/index.js'
import { ShoalError } from '../../lib/errors/index.js'

export class FlakyBackend implements Backend {
  readonly kind: string
  /** Which keys fail now (default: none). */
  down: (key: string) => boolean = () => false
  puts = 0
  /** put() calls per key, failed or not. */
  readonly putAttempts = new Map<string, number>()
  failed = 0

  constructor(private readonly real: Backend) {
    this.kind = real.kind
  }

  /** Every key fails (true) or none (false). */
  set allDown(value: boolean) {
    this.down = () => value
  }

  private fault(key: string): void {
    if (!this.down(key)) return
    this.failed++
    throw new ShoalError('BACKEND_ERROR', `backend unreachable (test fault) for ${key}`)
  }

  async stat(key: string, signal?: AbortSignal): Promise<ObjectStat | undefined> {
    this.fault(key)
    return this.real.stat(key, signal)
  }

  async get(key: string, opts?: { start?: number; end?: number; signal?: AbortSignal }): Promise<Readable> {
    this.fault(key)
    return this.real.get(key, opts)
  }

  async put(
    key: string,
    body: Readable | Buffer,
    opts?: { size?: number; signal?: AbortSignal },
  ): Promise<void> {
    this.putAttempts.set(key, (this.putAttempts.get(key) ?? 0) + 1)
    this.fault(key)
    await this.real.put(key, body, opts)
    this.puts++
  }

  async delete(key: string, signal?: AbortSignal): Promise<void> {
    this.fault(key)
    return this.real.delete(key, signal)
  }

  async list(
    prefix: string,
    opts?: { after?: string; limit?: number; signal?: AbortSignal },
  ): Promise<ListPage> {
    this.fault(prefix)
    return this.real.list(prefix, opts)
  }
}
