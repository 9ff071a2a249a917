/**
 * SHA-1 of finished pieces, inline or on a worker thread (EngineTuning.hashOnWorker).
 *
 * Measured with test/bench/wire.ts --hash inline,worker (256 MiB, loopback, 2 cores): SHA-1 is
 * ~40 % of the leecher's main-thread time, but the main thread is not what bounds a transfer
 * on this machine: inline / worker gave 499/523, 542/531 and 625/670 MB/s into a sink and
 * 398/393 into memory (noise either way), while the worker cost 0.3-0.46 CPU s/GiB more
 * (transfers and wake-ups). So pieces are hashed inline by default; on hosts with cores to
 * spare, hashOnWorker takes SHA-1 off the event loop (main thread ~90 % → ~70 % busy): the
 * piece's memory is transferred to the worker and back (no copy). Pieces under
 * HASH_WORKER_MIN_BYTES, a worker that failed, or a buffer that shares its memory are hashed
 * inline regardless.
 *
 * One worker per process, started on first use and unref'd while idle (only a pending job
 * keeps the process alive), shared by every engine that asks for it: one core of SHA-1
 * (~1.4 GB/s here) outruns any network we serve.
 */
import { createHash } from 'node:crypto'
import { Worker } from 'node:worker_threads'

/** Pieces smaller than this are hashed inline: the round trip would cost more than it saves. */
export const HASH_WORKER_MIN_BYTES = 256 << 10

// Evaluated as CommonJS, so the same code runs from dist/ and from sources under tsx.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
parentPort.on('message', (m) => {
  const digest = createHash('sha1').update(new Uint8Array(m[1], 0, m[2])).digest()
  parentPort.postMessage([m[0], m[1], digest], [m[1]])
})
`

type Done = (data: Buffer, digest: Uint8Array | undefined) => void

class HashWorker {
  private worker: Worker | undefined
  private broken = false
  private nextId = 1
  private readonly pending = new Map<number, { done: Done; length: number }>()

  /** False when the worker cannot be used (it failed); hash inline then. */
  get usable(): boolean {
    return !this.broken
  }

  /**
   * Hashes `data`, whose ArrayBuffer is handed over: `data` is unusable until `done` is called
   * with a buffer over the same memory (and the digest, or undefined if the worker failed).
   */
  hash(data: Buffer, done: Done): void {
    const w = this.start()
    const id = this.nextId++
    if (this.pending.size === 0) w.ref() // a pending job keeps the process alive, an idle worker not
    this.pending.set(id, { done, length: data.length })
    const ab = data.buffer as ArrayBuffer
    w.postMessage([id, ab, data.length], [ab])
  }

  private start(): Worker {
    if (this.worker !== undefined) return this.worker
    const w = new Worker(WORKER_SOURCE, { eval: true })
    w.on('message', this.onMessage)
    w.on('error', this.onFailure)
    w.on('exit', this.onFailure)
    w.unref() // after the listeners: adding a 'message' listener refs the worker's port again
    this.worker = w
    return w
  }

  private readonly onMessage = (m: [number, ArrayBuffer, Uint8Array]): void => {
    const job = this.pending.get(m[0])
    if (job === undefined) return
    this.pending.delete(m[0])
    if (this.pending.size === 0) this.worker?.unref()
    job.done(Buffer.from(m[1], 0, job.length), m[2])
  }

  /** The worker died: its jobs' memory is gone with it; callers fetch those pieces again. */
  private readonly onFailure = (): void => {
    this.broken = true
    this.worker = undefined
    const jobs = [...this.pending.values()]
    this.pending.clear()
    for (const job of jobs) job.done(Buffer.allocUnsafe(job.length), undefined)
  }
}

const shared = new HashWorker()

/** 'lost': the worker died holding the piece's memory; nobody is to blame, fetch it again. */
export type Verdict = 'ok' | 'bad' | 'lost'

/**
 * SHA-1 of `data` compared with `expected`; `done` receives the buffer to use from now on (the
 * same memory, handed back by the worker) and the verdict. Always asynchronous, so callers
 * have one code path.
 */
export function verifyPiece(
  data: Buffer,
  expected: Uint8Array,
  onWorker: boolean,
  done: (data: Buffer, verdict: Verdict) => void,
): void {
  const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength
  if (!onWorker || data.length < HASH_WORKER_MIN_BYTES || !own || !shared.usable) {
    const ok = createHash('sha1').update(data).digest().equals(expected)
    queueMicrotask(() => done(data, ok ? 'ok' : 'bad'))
    return
  }
  shared.hash(data, (back, digest) => {
    if (digest === undefined) done(back, 'lost')
    else done(back, Buffer.from(digest.buffer, digest.byteOffset, 20).equals(expected) ? 'ok' : 'bad')
  })
}
