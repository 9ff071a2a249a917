/**
 * A stand-in for the agent's local HTTP API on loopback, for PullCLI's timing behaviour: it
 * resolves every tag to one digest, reports swarm progress on /downloads, and serves the blob
 * as the test says: after a swarm phase that moves (or stalls), then a copy that trickles (or
 * stalls). Stopped (every socket destroyed) when the test ends.
 */
import { createServer, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Digest } from '../../lib/core/index.js'

export interface FakeAgentOptions {
  digest: Digest
  bytes: Buffer
  /**
   * Before the blob's headers: 'stall' never answers (no piece ever verified), { steps, everyMs }
   * verifies one piece of `steps` every `everyMs`, then answers; with `unverified` the steps are
   * blocks of one large piece (bytesReceived grows, no piece is verified until the last step).
   * Default: answers at once.
   */
  swarm?: 'stall' | { steps: number; everyMs: number; unverified?: boolean }
  /**
   * The body: 'whole' at once (default), 'stall' half of it then nothing, or one chunk of
   * `chunkBytes` every `everyMs`.
   */
  copy?: 'whole' | 'stall' | { chunkBytes: number; everyMs: number }
  /** Where GET …/blobs/:digest/file says the blob is (default: no such route, as an older agent). */
  cacheFile?: { path: string; size: number }
  /** 'stall': tag lookups are never answered. */
  resolve?: 'stall'
  /** Answer blob requests with this status and Shoal error body instead (e.g. 503 UNAVAILABLE). */
  blobError?: { status: number; code: string; message: string }
}

export interface FakeAgent {
  address: string
  /** Blob requests received. */
  blobRequests: number
  /** Tag lookups received. */
  tagRequests: number
}

export async function startFakeAgent(
  t: { teardown(fn: () => unknown): void },
  opts: FakeAgentOptions,
): Promise<FakeAgent> {
  const sockets = new Set<Socket>()
  const timers = new Set<NodeJS.Timeout>()
  const steps = typeof opts.swarm === 'object' ? opts.swarm.steps : 1
  let piecesDone = opts.swarm === undefined ? 1 : 0
  let stepsDone = 0
  const unverified = typeof opts.swarm === 'object' && opts.swarm.unverified === true
  const state: FakeAgent = { address: '', blobRequests: 0, tagRequests: 0 }
  const every = (ms: number, fn: () => boolean) => {
    const timer = setInterval(() => {
      if (!fn()) {
        clearInterval(timer)
        timers.delete(timer)
      }
    }, ms)
    timers.add(timer)
  }
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }
  const serveBody = (res: ServerResponse) => {
    res.writeHead(200, { 'content-length': opts.bytes.length, 'content-type': 'application/octet-stream' })
    const copy = opts.copy ?? 'whole'
    if (copy === 'whole') res.end(opts.bytes)
    else if (copy === 'stall') res.write(opts.bytes.subarray(0, opts.bytes.length >> 1))
    else {
      let sent = 0
      every(copy.everyMs, () => {
        if (res.destroyed) return false
        const next = Math.min(opts.bytes.length, sent + copy.chunkBytes)
        res.write(opts.bytes.subarray(sent, next))
        sent = next
        if (sent < opts.bytes.length) return true
        res.end()
        return false
      })
    }
  }
  const server = createServer((req, res) => {
    const url = req.url ?? ''
    if (url.startsWith('/tags/')) {
      state.tagRequests++
      if (opts.resolve === 'stall') return // never answers
      return json(res, 200, { tag: decodeURIComponent(url.slice(6)), digest: opts.digest.toString() })
    }
    if (url.startsWith('/downloads/'))
      return json(res, 200, {
        digest: opts.digest.toString(),
        state: piecesDone >= steps ? 'done' : 'downloading',
        piecesDone,
        pieceCount: steps,
        size: opts.bytes.length,
        bytesReceived: Math.round((stepsDone / steps) * opts.bytes.length),
        bytesFromOrigins: 0,
        bytesFromAgents: 0,
        bytesUploaded: 0,
      })
    if (url.startsWith('/namespace/') && url.endsWith('/file')) {
      if (!opts.cacheFile) return json(res, 404, { code: 'NOT_FOUND', message: `no route ${url}` })
      return json(res, 200, { digest: opts.digest.toString(), ...opts.cacheFile })
    }
    if (url.startsWith('/namespace/')) {
      state.blobRequests++
      if (opts.blobError) {
        const { status, code, message } = opts.blobError
        return json(res, status, { code, message })
      }
      if (opts.swarm === 'stall') return // never answers
      if (piecesDone >= steps) return serveBody(res)
      return every(typeof opts.swarm === 'object' ? opts.swarm.everyMs : 1, () => {
        if (res.destroyed) return false
        stepsDone++
        if (!unverified || stepsDone === steps) piecesDone = unverified ? steps : piecesDone + 1
        if (piecesDone < steps) return true
        serveBody(res)
        return false
      })
    }
    json(res, 404, { code: 'NOT_FOUND', message: `no route ${url}` })
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  state.address = `127.0.0.1:${(server.address() as { port: number }).port}`
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const timer of timers) clearInterval(timer)
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  )
  return state
}
