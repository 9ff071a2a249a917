/**
 * Flows: what the engine holds per peer connection. Each is created once per connection and
 * is itself the queue node (see limiter.ts), so asking for bandwidth allocates nothing; the
 * callbacks are bound once per flow, never per block.
 */
import { ShoalError } from '../errors/index.js'
import type { Group, Limiter, ObservableSource, PausableSource } from './limiter.js'

/** Egress: ask before writing a message; go now, or be called back when it is paid for. */
export interface EgressFlow {
  /** The group (torrent) this flow's bytes are shared within. */
  readonly key: string
  /** True while a request waits for bandwidth. */
  readonly waiting: boolean
  /**
   * Asks for `bytes`. true: write now. false: queued; the flow's `onGrant` (or the pending
   * `wait()`) fires once they are paid for. A request while one waits adds to it (one grant).
   */
  request(bytes: number): boolean
  /**
   * `request` for async loops: undefined when granted now (no allocation), else a promise
   * that resolves on the grant (or on close()) and rejects with ABORTED on `signal`.
   */
  wait(bytes: number, signal?: AbortSignal): Promise<void> | undefined
  /** Withdraws a waiting request (a pending wait() resolves). */
  cancel(): void
  /** Moves the flow to another group (e.g. once the handshake names the torrent). */
  setGroup(key: string): void
  /** Leaves the limiter; idempotent. A pending wait() resolves. */
  close(): void
}

/**
 * Ingress: reads are paid for before they happen. The source runs only while the flow holds
 * credit for one whole read (`readSize`, at most what the source reads at once); each read
 * is paid back at once if the bucket can, else the source is paused until it is, in fair
 * order, and the credit it still held goes back to the bucket. So bytes read never run
 * ahead of the tokens paid, and only running sockets hold credit: over any window about
 * rate × T + burst. (Paying after the read let every paused connection hold one unpaid
 * read, and keeping the credit of paused ones let them all spend it at once: with 20 peers
 * × 64 KiB, 1-s peaks of 1.3 and 1.1 × the cap.)
 */
export interface IngressFlow {
  readonly key: string
  /** True while the limiter holds the source paused. */
  readonly paused: boolean
  /** Counts a chunk read from the source (automatic for watched sources, see Limiter.register). */
  received(bytes: number): void
  setGroup(key: string): void
  /** Leaves the limiter, resumes the source if we paused it; idempotent. */
  close(): void
}

export abstract class FlowBase {
  /** Links in the group's queue. */
  next: FlowBase | null = null
  prev: FlowBase | null = null
  queued = false
  /** Bytes asked for while queued. */
  need = 0
  /** Virtual start tag of the queued request (see limiter.ts). */
  start = 0
  closed = false
  /** Whether grants count towards the limiter's byte total (ingress counts reads instead). */
  abstract readonly counts: boolean

  constructor(
    protected readonly limiter: Limiter,
    public group: Group,
  ) {}

  get key(): string {
    return this.group.key
  }

  setGroup(key: string): void {
    if (this.closed || key === this.group.key) return
    const need = this.need
    const wasQueued = this.queued
    if (wasQueued) this.limiter.dequeue(this)
    this.limiter.leave(this.group)
    this.group = this.limiter.join(key)
    if (wasQueued) this.limiter.enqueue(this, need)
  }

  protected leaveLimiter(): void {
    if (this.queued) this.limiter.dequeue(this)
    this.limiter.leave(this.group)
  }

  /** The queued request (`bytes`) was paid for. */
  abstract granted(bytes: number): void
}

/** The most a socket reads at once (Node's read size; the engine's onread buffers). */
export const DEFAULT_READ_SIZE = 64 * 1024

export class EgressFlowImpl extends FlowBase implements EgressFlow {
  readonly counts = true
  private readonly onGrant: ((flow: EgressFlow) => void) | undefined
  private resolve: (() => void) | undefined
  private reject: ((err: ShoalError) => void) | undefined
  private signal: AbortSignal | undefined
  private readonly onAbort = (): void => {
    const reject = this.reject
    this.settle()
    if (this.queued) this.limiter.dequeue(this)
    reject?.(new ShoalError('ABORTED', 'waiting for bandwidth aborted'))
  }

  constructor(limiter: Limiter, group: Group, onGrant: ((flow: EgressFlow) => void) | undefined) {
    super(limiter, group)
    this.onGrant = onGrant
  }

  get waiting(): boolean {
    return this.queued
  }

  request(bytes: number): boolean {
    if (this.closed) return true
    return this.limiter.acquire(this, bytes)
  }

  wait(bytes: number, signal?: AbortSignal): Promise<void> | undefined {
    if (signal?.aborted) return Promise.reject(new ShoalError('ABORTED', 'waiting for bandwidth aborted'))
    if (this.request(bytes)) return undefined
    if (this.resolve !== undefined) {
      throw new ShoalError('INTERNAL', 'wait() called while another wait() on this flow is pending')
    }
    return new Promise<void>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
      if (signal !== undefined) {
        this.signal = signal
        signal.addEventListener('abort', this.onAbort, { once: true })
      }
    })
  }

  cancel(): void {
    if (this.queued) this.limiter.dequeue(this)
    this.release()
  }

  close(): void {
    if (this.closed) return
    this.leaveLimiter()
    this.closed = true
    this.release()
  }

  granted(_bytes: number): void {
    if (this.resolve !== undefined) this.release()
    else this.onGrant?.(this)
  }

  /** Settles a pending wait() as done. */
  private release(): void {
    const resolve = this.resolve
    if (resolve === undefined) return
    this.settle()
    resolve()
  }

  private settle(): void {
    this.resolve = this.reject = undefined
    this.signal?.removeEventListener('abort', this.onAbort)
    this.signal = undefined
  }
}

export class SocketFlow extends FlowBase implements IngressFlow {
  readonly counts = false
  paused = false
  /** Bytes paid for and not read yet. */
  private credit = 0
  private readonly readSize: number
  private readonly source: PausableSource
  private readonly watched: ObservableSource | undefined
  private readonly onChunk = (chunk: Buffer): void => {
    this.received(chunk.length)
  }
  private readonly onClose = (): void => {
    this.close()
  }

  constructor(
    limiter: Limiter,
    group: Group,
    source: PausableSource | ObservableSource,
    watch: boolean,
    readSize: number,
  ) {
    super(limiter, group)
    this.source = source
    this.readSize = readSize
    if (watch && typeof (source as ObservableSource).on === 'function') {
      this.watched = source as ObservableSource
      this.watched.on('data', this.onChunk)
      this.watched.on('close', this.onClose)
    }
    this.topUp(readSize) // the first read is paid for before it happens too
  }

  received(bytes: number): void {
    this.limiter.bytes += bytes
    if (this.closed) return
    this.credit -= bytes
    // A read while a top-up waits (a source delivering what it had buffered) adds to it.
    if (this.queued) this.limiter.acquire(this, bytes)
    else this.topUp(this.readSize - this.credit)
  }

  /** Buys `need` bytes of credit, or pauses the source until the limiter grants them. */
  private topUp(need: number): void {
    if (need <= 0) return
    if (this.limiter.acquire(this, need)) {
      this.credit += need
      return
    }
    // Paid for later, in fair order; until then nothing more is read (TCP pushes back), and
    // the credit left is returned: the grant will be a whole read's worth.
    if (!this.paused) {
      this.paused = true
      this.source.pause()
    }
    const left = this.credit
    if (left > 0) {
      this.credit = 0
      this.limiter.acquire(this, left) // adds to the queued request
      this.limiter.refund(left)
    }
  }

  close(): void {
    if (this.closed) return
    this.leaveLimiter()
    this.closed = true
    if (this.watched !== undefined) {
      this.watched.off('data', this.onChunk)
      this.watched.off('close', this.onClose)
    }
    if (this.credit > 0) this.limiter.refund(this.credit)
    this.credit = 0
    this.resume()
  }

  granted(bytes: number): void {
    this.credit += bytes
    this.resume()
  }

  private resume(): void {
    if (!this.paused) return
    this.paused = false
    this.source.resume()
  }
}
