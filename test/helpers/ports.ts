/**
 * A block of consecutive free TCP ports on 127.0.0.1, for processes that take a base port and
 * bind base+0..base+n-1 themselves (the herd's entry script). Each candidate block is bound in
 * full and released, so it was free a moment ago; callers that start a separate process retry
 * with a new block when the process still reports EADDRINUSE (another test took a port between).
 */
import { createServer, type Server } from 'node:net'

export async function freePortBlock(n: number): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (40_000 - n))
    const held: Server[] = []
    try {
      for (let i = 0; i < n; i++) held.push(await listen(base + i))
      return base
    } catch {
      // taken: try another block
    } finally {
      await Promise.all(held.map((s) => new Promise((res) => s.close(res))))
    }
  }
  throw new Error(`no block of ${n} free ports found`)
}

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve(server))
  })
}
