/**
 * The parts of lib/http/server.ts's client policy that are new with the server limits of
 * docs/security.md: clear answers to requests that never became one (headers too large or too
 * slow), and the check that cuts a request body trickling in too slowly for the idle timeout
 * to notice. Nothing here runs per request: answers are built once per server, the sweep walks
 * the open connections once per window.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { ShoalError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import { sendError } from './body.js'
import type { HttpLimits } from './server.js'

/** The request a connection is serving (server.ts's in-flight table). */
export interface InFlight {
  req: IncomingMessage
  res: ServerResponse
}

function answer(status: number, reason: string, code: string, message: string): string {
  const body = JSON.stringify({ code, message })
  return `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
}
const MALFORMED = answer(400, 'Bad Request', 'BAD_REQUEST', 'malformed HTTP request')

/** What to write to a client whose request Node refused before it reached a handler (clientError). */
export class ClientErrorAnswers {
  private readonly tooLarge: string
  private readonly tooSlow: string

  constructor(limits: HttpLimits) {
    this.tooLarge = answer(
      431,
      'Request Header Fields Too Large',
      'PAYLOAD_TOO_LARGE',
      `request headers exceed ${limits.maxHeaderBytes} bytes (server.maxHeaderBytes)`,
    )
    this.tooSlow = answer(
      408,
      'Request Timeout',
      'REQUEST_TIMEOUT',
      `request headers not complete within ${limits.headersTimeoutMs} ms (server.headersTimeoutMs)`,
    )
  }

  for(err: NodeJS.ErrnoException): string {
    if (err.code === 'HPE_HEADER_OVERFLOW') return this.tooLarge
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return this.tooSlow
    return MALFORMED
  }
}

/** A connection's watch: the request last seen waiting on its body, and the bytes read then. */
interface BodyWatch {
  req: IncomingMessage | undefined
  bytes: number
}

/**
 * Every bodyRateWindowMs: a request whose body the server has waited on for a whole window
 * (its handler has read all that came: nothing buffered, idle timeout not suspended) and that
 * brought fewer than minBodyBytesPerSec × window bytes is answered 408 REQUEST_TIMEOUT and its
 * connection ends (server.ts closes a connection whose body was not read). A handler slow to
 * read (backpressure) keeps bytes buffered, so its client is never blamed for it.
 */
export class SlowBodySweep {
  private readonly watches = new Map<Socket, BodyWatch>()
  private timer: NodeJS.Timeout | undefined
  private readonly enabled: boolean

  constructor(
    private readonly limits: HttpLimits,
    private readonly log: Logger,
    private readonly inFlight: (socket: Socket) => InFlight | undefined,
  ) {
    this.enabled = limits.minBodyBytesPerSec > 0
  }

  start(): void {
    if (!this.enabled || this.timer) return
    this.timer = setInterval(() => this.sweep(), this.limits.bodyRateWindowMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  watch(socket: Socket): void {
    if (this.enabled) this.watches.set(socket, { req: undefined, bytes: 0 })
  }

  forget(socket: Socket): void {
    this.watches.delete(socket)
  }

  private sweep(): void {
    const { minBodyBytesPerSec, bodyRateWindowMs } = this.limits
    const need = (minBodyBytesPerSec * bodyRateWindowMs) / 1000
    for (const [socket, watch] of this.watches) {
      const live = this.inFlight(socket)
      const bytes = socket.bytesRead
      const waiting =
        live !== undefined &&
        !live.req.complete &&
        !live.res.headersSent &&
        !live.res.destroyed &&
        socket.timeout !== 0 &&
        live.req.readableLength === 0
      if (waiting && watch.req === live.req && bytes - watch.bytes < need) {
        watch.req = undefined
        const got = bytes - watch.bytes
        this.log.warn(
          {
            method: live.req.method,
            url: live.req.url?.slice(0, 200),
            bytes: got,
            windowMs: bodyRateWindowMs,
          },
          'request body too slow; closing',
        )
        live.res.setHeader('connection', 'close')
        sendError(
          live.res,
          new ShoalError(
            'REQUEST_TIMEOUT',
            `the request body brought ${got} bytes in ${bodyRateWindowMs} ms, less than ${minBodyBytesPerSec} bytes/s (server.minBodyBytesPerSec); the connection is closed`,
          ),
        )
        continue
      }
      watch.bytes = bytes
      watch.req = waiting ? live.req : undefined
    }
  }
}
