/**
 * The FTP-style baseline: one server capped at B (a token bucket of the bench's own, shared by
 * every response, FIFO-fair) and `clients` hosts fetching the whole file over HTTP at once, each
 * from its own loopback address, each writing it to disk. Its makespan is about clients·size/B;
 * the run measures it rather than assuming it.
 */
import { once } from 'node:events'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { createServer, get, type IncomingMessage } from 'node:http'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { ShoalError } from '../../lib/errors/index.js'
import { TokenBucket } from './helpers.js'

export interface HttpBaselineResult {
  clients: number
  bytes: number
  /** Seconds from the start to each client's file being complete on disk. */
  completion: number[]
}

const CHUNK = 64 << 10

export async function runHttpBaseline(opts: {
  dir: string
  file: string
  bytes: number
  clients: number
  capBytesPerSec: number
  timeoutMs: number
}): Promise<HttpBaselineResult> {
  await mkdir(opts.dir, { recursive: true })
  const bucket = new TokenBucket(opts.capBytesPerSec, CHUNK)
  const server = createServer(async (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': opts.bytes })
    try {
      for await (const chunk of createReadStream(opts.file, { end: opts.bytes - 1, highWaterMark: CHUNK })) {
        const wait = bucket.delayFor((chunk as Buffer).length)
        if (wait > 0) await sleep(wait)
        if (!res.write(chunk)) await once(res, 'drain')
        if (req.destroyed) return
      }
      res.end()
    } catch {
      res.destroy()
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  const signal = AbortSignal.timeout(opts.timeoutMs)
  const t0 = performance.now()
  try {
    const completion = await Promise.all(
      Array.from({ length: opts.clients }, async (_, i) => {
        const req = get({ host: '127.0.0.1', port, path: '/blob', localAddress: `127.0.0.${i + 3}`, signal })
        const [res] = (await once(req, 'response')) as [IncomingMessage]
        await pipeline(res, createWriteStream(join(opts.dir, `client-${i + 1}.bin`)))
        if ((res.headers['content-length'] ?? '') !== String(opts.bytes))
          throw new ShoalError('SIZE_MISMATCH', `HTTP baseline client ${i + 1}: wrong length`)
        return (performance.now() - t0) / 1000
      }),
    )
    return { clients: opts.clients, bytes: opts.bytes, completion }
  } finally {
    server.closeAllConnections()
    server.close()
  }
}
