/**
 * A watch over HTTP: newline-delimited JSON `{type, object}`, one event per line, for as long
 * as the client stays (or ?timeoutSeconds). BOOKMARKs every heartbeat keep an idle connection
 * alive through the server's idle policy and proxies, and tell the client how far it is. The
 * store is read with a cursor, so nothing is buffered for a slow client beyond the socket: a
 * client that does not read for `slowWatcherMs` is cut off (it resumes from its last
 * resourceVersion, or lists again on 410). An error once the stream has started (the history
 * moved past a slow watcher) is sent as `{type: "ERROR", object: {code, message}}` and ends it.
 */
import type { ServerResponse } from 'node:http'
import { toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { WatchEvent } from '../types.js'

export interface WatchLimits {
  maxWatchers: number
  heartbeatMs: number
  slowWatcherMs: number
  maxTimeoutSeconds: number
}

export async function streamWatch(
  res: ServerResponse,
  events: AsyncIterable<WatchEvent>,
  stop: AbortController,
  limits: WatchLimits,
  log: Logger,
): Promise<void> {
  res.writeHead(200, {
    'content-type': 'application/x-ndjson',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  })
  res.flushHeaders()
  try {
    for await (const ev of events) {
      if (res.destroyed) return
      if (!res.write(`${JSON.stringify(ev)}\n`) && !(await drained(res, limits.slowWatcherMs))) {
        log.warn({ slowWatcherMs: limits.slowWatcherMs }, 'watch client is not reading; cutting it off')
        res.destroy()
        return
      }
    }
  } catch (err) {
    if (!stop.signal.aborted && !res.destroyed) {
      const e = toShoalError(err)
      res.write(`${JSON.stringify({ type: 'ERROR', object: e.toJSON() })}\n`)
    }
  } finally {
    stop.abort()
  }
  if (!res.destroyed) res.end()
}

function drained(res: ServerResponse, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer)
      res.off('drain', onDrain)
      res.off('close', onClose)
      resolve(ok)
    }
    const onDrain = () => done(true)
    const onClose = () => done(false)
    const timer = setTimeout(() => done(false), ms)
    res.on('drain', onDrain)
    res.on('close', onClose)
  })
}
