/**
 * The clients' `--timeout`: seconds without progress, not a total. A 20 GB pull that keeps
 * moving is never cut off; one that stalls for N seconds fails with TIMEOUT "… timed out after
 * N s without progress", whatever the aborted request itself threw.
 */
import { ShoalError, toShoalError } from '../errors/index.js'

export interface Progress {
  /** Something moved (bytes arrived, a piece verified, a reply came): the clock starts again. */
  touch(): void
}

/**
 * Runs `work` with a signal that aborts after `seconds` without a `touch()`. 0 or undefined:
 * no deadline (the signal never aborts on its own, though `outer` still can).
 */
export async function withProgressTimeout<T>(
  what: string,
  seconds: number | undefined,
  work: (signal: AbortSignal, progress: Progress) => Promise<T>,
  outer?: AbortSignal,
): Promise<T> {
  const ac = new AbortController()
  const onOuter = () => ac.abort(outer?.reason)
  outer?.addEventListener('abort', onOuter, { once: true })
  if (outer?.aborted) onOuter()
  let last = Date.now()
  let fired = false
  let timer: NodeJS.Timeout | undefined
  const limitMs = seconds ? seconds * 1000 : 0
  // One timer, re-armed only when it fires: touch() is called per chunk and must stay cheap.
  const arm = (ms: number) => {
    timer = setTimeout(() => {
      const idle = Date.now() - last
      if (idle >= limitMs) {
        fired = true
        // A TimeoutError, as AbortSignal.timeout() gives: the HTTP client then says what it was
        // still waiting for ("the agent at … had not answered GET /tags/…"), not "aborted".
        ac.abort(new DOMException(`${what} timed out after ${seconds} s without progress`, 'TimeoutError'))
      } else arm(limitMs - idle)
    }, ms)
  }
  if (limitMs) arm(limitMs)
  const progress: Progress = {
    touch: () => {
      last = Date.now()
    },
  }
  try {
    return await work(ac.signal, progress)
  } catch (err) {
    if (!fired) throw err
    const e = toShoalError(err)
    const own = `${what} timed out after ${seconds} s without progress`
    const waiting =
      e.code === 'TIMEOUT' && e.message !== own && e.message !== 'operation timed out'
        ? ` (${e.message})`
        : ''
    throw new ShoalError('TIMEOUT', `${own}${waiting}`, {
      cause: e,
      details: { timeoutSeconds: seconds },
    })
  } finally {
    clearTimeout(timer)
    outer?.removeEventListener('abort', onOuter)
  }
}
