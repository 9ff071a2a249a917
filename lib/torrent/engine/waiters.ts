/**
 * Callers waiting for one shared download. Each caller can abort on its own signal without
 * affecting the others; when the last one leaves, the owner is told (to stop the download).
 */
import { ShoalError } from '../../errors/index.js'

interface Waiter<T> {
  resolve(value: T): void
  reject(err: ShoalError): void
  signal: AbortSignal | undefined
  onAbort: (() => void) | undefined
}

export class Waiters<T> {
  private readonly list = new Set<Waiter<T>>()

  get size(): number {
    return this.list.size
  }

  add(signal: AbortSignal | undefined, onEmpty: () => void): Promise<T> {
    if (signal?.aborted) return Promise.reject(abortError(signal))
    return new Promise<T>((resolve, reject) => {
      const w: Waiter<T> = { resolve, reject, signal, onAbort: undefined }
      if (signal !== undefined) {
        w.onAbort = () => {
          this.list.delete(w)
          reject(abortError(signal))
          if (this.list.size === 0) onEmpty()
        }
        signal.addEventListener('abort', w.onAbort, { once: true })
      }
      this.list.add(w)
    })
  }

  resolveAll(value: T): void {
    for (const w of this.take()) w.resolve(value)
  }

  rejectAll(err: ShoalError): void {
    for (const w of this.take()) w.reject(err)
  }

  private take(): Array<Waiter<T>> {
    const all = [...this.list]
    this.list.clear()
    for (const w of all) if (w.onAbort) w.signal?.removeEventListener('abort', w.onAbort)
    return all
  }
}

/** TIMEOUT when the signal came from AbortSignal.timeout, ABORTED otherwise. */
export function abortError(signal: AbortSignal): ShoalError {
  const reason: unknown = signal.reason
  if (reason instanceof ShoalError) return reason
  const timedOut = reason instanceof Error && reason.name === 'TimeoutError'
  return timedOut
    ? new ShoalError('TIMEOUT', 'download timed out', { cause: reason })
    : new ShoalError('ABORTED', 'download aborted', { cause: reason })
}
