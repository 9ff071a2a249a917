/**
 * ProxyClient.pushBlob when the proxy answers "already stored" before reading the body and the
 * connection drops while the body is still being sent: the client asks once whether the blob is
 * stored (HEAD) and reports a dedupe, instead of a failed push; a blob that is not stored keeps
 * the transport error.
 */
import { createServer } from 'node:http'
import { Readable } from 'node:stream'
import t from 'tap'
import { Digest } from '../../lib/core/index.js'
import { ProxyClient } from '../../lib/proxy/client/index.js'

const SIZE = 32 << 20
const digest = Digest.fromBuffer(Buffer.from('stored'))

async function dropAfterAnswer(t: { teardown(fn: () => unknown): void }, stored: boolean): Promise<string> {
  const server = createServer((req, res) => {
    if (req.method === 'HEAD') {
      res.writeHead(stored ? 200 : 404, { 'content-length': stored ? SIZE : 0 })
      return res.end()
    }
    // Never reads the body: kill the connection at once, as a proxy going away would (the
    // client is mid-body and sees EPIPE/ECONNRESET instead of any answer).
    req.socket.destroy()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => server.close(r)))
  return `127.0.0.1:${(server.address() as { port: number }).port}`
}

function body(): Readable {
  let sent = 0
  return new Readable({
    read() {
      if (sent >= SIZE) return this.push(null)
      sent += 1 << 20
      this.push(Buffer.alloc(1 << 20))
    },
  })
}

t.test('dropped mid-body, blob stored: a dedupe', async (t) => {
  const proxy = new ProxyClient(await dropAfterAnswer(t, true))
  t.same(await proxy.pushBlob('default', digest, body(), SIZE), { existed: true, size: SIZE })
})

t.test('dropped mid-body, blob not stored: the transport error stands', async (t) => {
  const proxy = new ProxyClient(await dropAfterAnswer(t, false))
  await t.rejects(proxy.pushBlob('default', digest, body(), SIZE), { code: 'UNAVAILABLE' })
})
