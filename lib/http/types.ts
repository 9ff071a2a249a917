import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from '../log/index.js'

export interface RouteContext {
  req: IncomingMessage
  res: ServerResponse
  params: Record<string, string>
  query: URLSearchParams
  /** Aborted when the client goes away or the server stops. */
  signal: AbortSignal
  log: Logger
}

export type Handler = (ctx: RouteContext) => Promise<void> | void
