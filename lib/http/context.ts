/** The RouteContext HttpServer gives each request (server.ts): what a handler does not read costs nothing. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from '../log/index.js'
import type { RouteContext } from './types.js'

/** Where a request's abort controller is registered so that stop() can abort it. */
export interface Controllers {
  /** Registers it; aborts it at once when the server is already stopped. */
  track(controller: AbortController): void
  untrack(controller: AbortController): void
}

/**
 * A request's RouteContext. The query is parsed and the abort signal created only when the
 * handler reads them: the tracker's announce (thousands a second) needs neither, and together
 * they were about a tenth of its CPU.
 */
export class LazyContext implements RouteContext {
  params: Record<string, string> = {}
  private parsedQuery: URLSearchParams | undefined
  private controller: AbortController | undefined
  /** The response closed (finished or not). */
  private done = false
  /** The handler returned: what happens to the response afterwards is no longer its concern. */
  private released = false

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly log: Logger,
    private readonly rawQuery: string,
    private readonly owner: Controllers,
  ) {}

  get query(): URLSearchParams {
    this.parsedQuery ??= new URLSearchParams(this.rawQuery)
    return this.parsedQuery
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      const controller = new AbortController()
      this.controller = controller
      this.owner.track(controller)
      // The client went away before the answer was complete.
      if (this.done && !this.res.writableFinished) controller.abort()
    }
    return this.controller.signal
  }

  /** The response closed: a handler still working on it is told, unless it was answered in full. */
  closed(): void {
    this.done = true
    if (!this.released && this.controller !== undefined && !this.res.writableFinished) this.controller.abort()
  }

  /** The handler returned: the server's stop() no longer needs to reach it. */
  release(): void {
    this.released = true
    if (this.controller !== undefined) this.owner.untrack(this.controller)
  }
}
