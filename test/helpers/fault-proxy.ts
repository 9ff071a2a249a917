/**
 * An HTTP proxy that fails a deterministic share of the requests it forwards, for tests of
 * clients (the S3 backend) against a flaky server. Which requests fail is drawn from a seeded
 * generator (mulberry32), so a run fails the same request numbers every time; what arrives in
 * which order still depends on the client's concurrency.
 *
 * The four faults, one each in turn among the failed requests:
 * - `500`: 500 InternalError (S3's XML error body), the request body drained first;
 * - `503`: 503 SlowDown, likewise;
 * - `reset`: the client's connection destroyed before anything is forwarded;
 * - `lost-answer`: the request is forwarded and the server acts on it, then the client's
 *   connection is destroyed instead of the answer (a commit that happened though the client
 *   never heard so: retries must be harmless).
 */
import { createServer, type IncomingMessage, request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export type Fault = '500' | '503' | 'reset' | 'lost-answer'
const FAULTS: readonly Fault[] = ['500', '503', 'reset', 'lost-answer']

export interface FaultProxy {
  /** http://127.0.0.1:port to give the client instead of the server's URL. */
  readonly url: string
  /** Requests seen, and faults injected by kind. */
  readonly stats: { requests: number; faults: Record<Fault, number> }
  /** Every failed request as "METHOD path?query" with its fault. */
  readonly failed: { request: string; fault: Fault }[]
  /** Stops failing (true) or starts again. */
  pause(paused: boolean): void
  close(): Promise<void>
}

/** mulberry32: a small seeded generator, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

export async function startFaultProxy(
  target: string,
  opts: { failRate: number; seed: number },
): Promise<FaultProxy> {
  const upstream = new URL(target)
  const random = seededRandom(opts.seed)
  const stats = { requests: 0, faults: { '500': 0, '503': 0, reset: 0, 'lost-answer': 0 } }
  const failed: { request: string; fault: Fault }[] = []
  let paused = false
  let turn = 0

  const forward = (req: IncomingMessage, onAnswer: (r: IncomingMessage) => void) => {
    const up = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      onAnswer,
    )
    up.on('error', () => req.socket.destroy())
    req.pipe(up)
  }

  const server: Server = createServer((req, res) => {
    stats.requests++
    const draw = random()
    if (paused || draw >= opts.failRate) {
      forward(req, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers)
        r.pipe(res)
      })
      return
    }
    const fault = FAULTS[turn++ % FAULTS.length] as Fault
    stats.faults[fault]++
    failed.push({ request: `${req.method} ${req.url}`, fault })
    switch (fault) {
      case 'reset':
        req.socket.destroy()
        return
      case 'lost-answer':
        forward(req, (r) => {
          r.resume()
          r.on('end', () => req.socket.destroy())
        })
        return
      default: {
        const [status, code] = fault === '500' ? [500, 'InternalError'] : [503, 'SlowDown']
        req.resume()
        req.on('end', () => {
          res.writeHead(status, { 'content-type': 'application/xml', connection: 'close' })
          res.end(
            `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected</Message></Error>`,
          )
        })
      }
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url,
    stats,
    failed,
    pause(p) {
      paused = p
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
