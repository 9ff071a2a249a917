/**
 * One lifecycle for every long-lived part (daemons, the herd, the torrent engine):
 *
 * - start(signal?) brings the part up. A second call while it starts or runs returns the same
 *   promise. A start that fails, or whose signal aborts, leaves nothing running (what it had
 *   opened is closed again) and rejects.
 * - stop() ends the part's life: it waits for a start in progress, then closes everything.
 *   Idempotent, and a no-op for a part that never started; start() afterwards rejects.
 *
 * startAll() starts a list of parts in order; when one fails it stops those already started in
 * reverse order and rethrows, and the stopper it returns stops them all in reverse order.
 */
import { type AddressInfo, createServer, type Server } from 'node:net'
import { ShoalError } from '../errors/index.js'

export interface Service {
  start(signal?: AbortSignal): Promise<void>
  stop(): Promise<void>
}

export interface Stopper {
  /** Stops every started part in reverse order (idempotent); rejects with the first stop error. */
  stop(): Promise<void>
}

/** A part, or a function that makes it once the parts before it have started (to wire bound ports). */
export type Part = Service | (() => Service | Promise<Service>)

function abortError(what: string, signal: AbortSignal): ShoalError {
  return new ShoalError('ABORTED', `${what}: start aborted`, { cause: signal.reason })
}

/**
 * The start/stop contract above around a part's own start and stop steps. After a failed or
 * aborted start, `rollback` (default: `stop`) closes what the start opened, so it must cope with
 * a part that is only half up.
 */
export class Lifecycle implements Service {
  #starting: Promise<void> | undefined
  #stopping: Promise<void> | undefined

  constructor(
    readonly name: string,
    private readonly steps: {
      start: (signal: AbortSignal | undefined) => Promise<void>
      stop: () => Promise<void>
      rollback?: () => Promise<void>
    },
  ) {}

  /** True once start() resolved and until stop() is called. */
  get running(): boolean {
    return this.#started && !this.#stopping
  }

  #started = false

  /** True once stop() was called: the part does not start again. */
  get stopped(): boolean {
    return this.#stopping !== undefined
  }

  start(signal?: AbortSignal): Promise<void> {
    if (this.#stopping) return Promise.reject(new ShoalError('UNAVAILABLE', `${this.name} is stopped`))
    if (!this.#starting) {
      const starting = this.#run(signal)
      this.#starting = starting
      starting.catch(() => {
        if (this.#starting === starting) this.#starting = undefined
      })
    }
    return this.#starting
  }

  async #run(signal: AbortSignal | undefined): Promise<void> {
    // Let start() store the promise before anything can fail.
    await Promise.resolve()
    try {
      if (signal?.aborted) throw abortError(this.name, signal)
      await this.steps.start(signal)
      if (signal?.aborted) throw abortError(this.name, signal)
      this.#started = true
    } catch (err) {
      // The error of the start is what counts; a stop that fails too must not hide it.
      await (this.steps.rollback ?? this.steps.stop)().catch(() => undefined)
      throw signal?.aborted && !(err instanceof ShoalError && err.code === 'ABORTED')
        ? abortError(this.name, signal)
        : err
    }
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      const starting = this.#starting
      if (!starting) return
      // A start that failed has already stopped what it opened.
      if (
        !(await starting.then(
          () => true,
          () => false,
        ))
      )
        return
      await this.steps.stop()
    })()
    return this.#stopping
  }
}

/**
 * Starts `parts` in order (a function is called once the parts before it are up). When one
 * fails, or `signal` aborts, the parts already started are stopped in reverse order, the
 * failing one included (its own start has cleaned up; its stop is then a no-op), and the
 * error is rethrown.
 */
export async function startAll(parts: readonly Part[], signal?: AbortSignal): Promise<Stopper> {
  const started: Service[] = []
  const stopAll = async () => {
    let first: unknown
    for (const part of started.splice(0).reverse()) {
      try {
        await part.stop()
      } catch (err) {
        first ??= err
      }
    }
    if (first !== undefined) throw first
  }
  try {
    for (const part of parts) {
      if (signal?.aborted) throw abortError('start', signal)
      const service = typeof part === 'function' ? await part() : part
      started.push(service)
      await service.start(signal)
    }
  } catch (err) {
    await stopAll().catch(() => undefined)
    throw err
  }
  let stopping: Promise<void> | undefined
  return {
    stop: () => {
      stopping ??= stopAll()
      return stopping
    },
  }
}

/** A list of parts as one part: started in order, stopped in reverse (e.g. a whole herd). */
export class ServiceGroup implements Service {
  readonly #life: Lifecycle

  constructor(name: string, parts: readonly Part[]) {
    let stopper: Stopper | undefined
    this.#life = new Lifecycle(name, {
      start: async (signal) => {
        stopper = await startAll(parts, signal)
      },
      stop: async () => {
        await stopper?.stop()
      },
    })
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.#life.start(signal)
  }

  stop(): Promise<void> {
    return this.#life.stop()
  }
}

/** The one line a listener that cannot bind fails with ("<what>: cannot listen on host:port: EADDRINUSE (…)"). */
export function listenError(
  what: string,
  host: string,
  port: number,
  err: NodeJS.ErrnoException,
): ShoalError {
  const hint =
    err.code === 'EADDRINUSE' ? ' (another process is using it; pick another port in the config)' : ''
  return new ShoalError(
    'UNAVAILABLE',
    `${what}: cannot listen on ${host}:${port}: ${err.code ?? err.message}${hint}`,
    {
      cause: err,
    },
  )
}

/**
 * A TCP listener bound at start() and handed to a server later (`server.listen(listener.server)`),
 * so its port can be wired into other parts' config before that server starts: bind first, then
 * wire. stop() closes it (a no-op once the server it was handed to has closed it).
 */
export class ReservedListener implements Service {
  #server: Server | undefined
  readonly #life: Lifecycle

  constructor(what: string, host: string, port: number) {
    this.#life = new Lifecycle(what, {
      start: async () => {
        this.#server = await bindListener(what, host, port)
      },
      stop: async () => {
        const server = this.#server
        if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
      },
    })
  }

  /** The bound listener; valid after start(). */
  get server(): Server {
    if (!this.#server) throw new ShoalError('UNAVAILABLE', `${this.#life.name} is not bound`)
    return this.#server
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.#life.start(signal)
  }

  stop(): Promise<void> {
    return this.#life.stop()
  }
}

function bindListener(what: string, host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', (err) => reject(listenError(what, host, port, err)))
    server.listen({ port, host, exclusive: true }, () => resolve(server))
  })
}
