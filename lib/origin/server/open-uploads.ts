/**
 * The origin's open uploads, in memory: who opened each (the client's address), for which
 * digest, when it last moved. It enforces three rules the upload files alone cannot:
 *
 * - caps: at most `max` open uploads in all and `perClient` per client address, so a client
 *   cannot fill the disk with empty uploads (a POST over a cap is 429 TOO_MANY_REQUESTS);
 * - expiry: an upload idle (no chunk, no request in flight) for `idleMs` is gone: its next
 *   request is UPLOAD_NOT_FOUND and it no longer counts against the caps;
 * - one upload per digest: a second POST for a digest being uploaded waits for the first
 *   to end (the caller then answers ALREADY_EXISTS), so concurrent pushes of one file send
 *   its bytes once.
 *
 * Uploads that outlived a restart are not known here until their next request (then they are
 * adopted); files nobody adopts are purged by age (BlobStore.purgeUploads).
 */
import { ShoalError } from '../../errors/index.js'

export interface OpenUpload {
  readonly uid: string
  readonly digestHex: string
  readonly client: string
  lastActive: number
  /** Requests (PATCH, PUT) running on it: never idle while one runs. */
  inFlight: number
  /** Resolves when the upload is committed, deleted or expired. */
  readonly ended: Promise<void>
  end: () => void
}

export interface OpenUploadLimits {
  max: number
  perClient: number
  idleMs: number
  now?: () => number
}

export class OpenUploads {
  private readonly byUid = new Map<string, OpenUpload>()
  /** The upload other POSTs of the same digest wait for (the newest live one). */
  private readonly byDigest = new Map<string, OpenUpload>()
  private readonly perClient = new Map<string, number>()
  private readonly now: () => number

  constructor(private readonly limits: OpenUploadLimits) {
    this.now = limits.now ?? Date.now
  }

  get idleMs(): number {
    return this.limits.idleMs
  }

  get size(): number {
    return this.byUid.size
  }

  /** Refuses a new upload over a cap (after dropping expired ones, returned for deletion). */
  admit(client: string): string[] {
    const expired = this.sweep()
    if (this.byUid.size >= this.limits.max) {
      throw new ShoalError(
        'TOO_MANY_REQUESTS',
        `this origin has ${this.byUid.size} open uploads, its limit (maxOpenUploads); finish or abort uploads, or retry later`,
      )
    }
    const mine = this.perClient.get(client) ?? 0
    if (mine >= this.limits.perClient) {
      throw new ShoalError(
        'TOO_MANY_REQUESTS',
        `${client} has ${mine} open uploads, the limit per client (maxOpenUploadsPerClient); finish or abort them (DELETE .../uploads/:uid), or retry later`,
      )
    }
    return expired
  }

  add(uid: string, digestHex: string, client: string): OpenUpload {
    let end!: () => void
    const ended = new Promise<void>((resolve) => {
      end = resolve
    })
    const u: OpenUpload = { uid, digestHex, client, lastActive: this.now(), inFlight: 0, ended, end }
    this.byUid.set(uid, u)
    this.byDigest.set(digestHex, u)
    this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1)
    return u
  }

  /** The live upload of a digest, if any (an idle one past its time is not live). */
  ofDigest(digestHex: string): OpenUpload | undefined {
    const u = this.byDigest.get(digestHex)
    return u && !this.isExpired(u) ? u : undefined
  }

  get(uid: string): OpenUpload | undefined {
    return this.byUid.get(uid)
  }

  isExpired(u: OpenUpload): boolean {
    return u.inFlight === 0 && this.now() - u.lastActive >= this.limits.idleMs
  }

  /** How long the upload has been idle, ms (0 while a request runs on it). */
  idleFor(u: OpenUpload): number {
    return u.inFlight > 0 ? 0 : this.now() - u.lastActive
  }

  begin(u: OpenUpload): void {
    u.inFlight++
    u.lastActive = this.now()
  }

  finish(u: OpenUpload): void {
    u.inFlight--
    u.lastActive = this.now()
  }

  /** Forgets the upload and wakes whoever waits for it. Idempotent. */
  remove(uid: string): void {
    const u = this.byUid.get(uid)
    if (!u) return
    this.byUid.delete(uid)
    if (this.byDigest.get(u.digestHex) === u) this.byDigest.delete(u.digestHex)
    const n = (this.perClient.get(u.client) ?? 1) - 1
    if (n > 0) this.perClient.set(u.client, n)
    else this.perClient.delete(u.client)
    u.end()
  }

  /** Drops every expired upload; returns their ids (the caller deletes the files). */
  sweep(): string[] {
    const out: string[] = []
    for (const u of this.byUid.values()) if (this.isExpired(u)) out.push(u.uid)
    for (const uid of out) this.remove(uid)
    return out
  }

  /** Wakes every waiter (shutdown). */
  clear(): void {
    for (const uid of [...this.byUid.keys()]) this.remove(uid)
  }
}
