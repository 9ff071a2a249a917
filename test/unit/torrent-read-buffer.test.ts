import { once } from 'node:events'
import { type AddressInfo, connect, createServer, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { adoptReads, READ_BUFFER, ReadSink } from '../../lib/torrent/wire/read-buffer.js'

/** A loopback server whose first accepted socket is handed to the test. */
async function pair(): Promise<{
  server: ReturnType<typeof createServer>
  client: Socket
  accepted: Socket
}> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const acceptedP = once(server, 'connection') as Promise<[Socket]>
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1')
  await once(client, 'connect')
  const [accepted] = await acceptedP
  return { server, client, accepted }
}

const collect = () => {
  const got: Buffer[] = []
  const views = new Set<ArrayBufferLike>()
  return {
    got,
    views,
    ingest(chunk: Buffer) {
      views.add(chunk.buffer)
      got.push(Buffer.from(chunk)) // a copy: the view is refilled by the next read
    },
  }
}

t.test(
  'an accepted socket is re-created to read into one buffer; nothing is lost or reordered',
  async (t) => {
    const { server, client, accepted } = await pair()
    // Bytes that arrive while the old socket still reads through its stream...
    const early = Buffer.from('before adoption;')
    accepted.pause()
    client.write(early)
    await sleep(50)
    const sink = new ReadSink()
    const target = collect()
    sink.target = target
    const adopted = adoptReads(accepted, sink)
    t.ok(adopted, 'a plain accepted socket is adopted')
    const { socket, head } = adopted!
    t.ok(accepted.destroyed, 'the old Socket object is retired')
    t.same(head, early, 'what the old stream had buffered comes back as head')
    // ...and afterwards, through the read buffer, several reads' worth.
    const late = Buffer.alloc(3 * READ_BUFFER + 123)
    for (let i = 0; i < late.length; i++) late[i] = i & 0xff
    client.write(late)
    while (Buffer.concat(target.got).length < late.length) await sleep(10)
    t.same(Buffer.concat(target.got), late, 'every later byte, in order')
    t.equal(target.views.size, 1, 'all reads were views of one buffer')
    t.equal(socket.remoteAddress, '127.0.0.1', 'the new socket has the connection')
    // Writing back works, and closing the new socket closes the connection.
    socket.write('pong')
    const [reply] = (await once(client, 'data')) as [Buffer]
    t.equal(reply.toString(), 'pong')
    const clientClosed = once(client, 'close')
    socket.destroy()
    await clientClosed
    // The server's connection count dropped with the old socket: close() does not wait.
    const count = await new Promise<number>((resolve, reject) =>
      server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
    )
    t.equal(count, 0, 'the server counts no connection')
    const closeError = await new Promise<Error | undefined>((resolve) => server.close(resolve))
    t.equal(closeError, undefined, 'server closed')
  },
)

t.test('sockets that cannot be adopted are left as they are', async (t) => {
  const { server, client, accepted } = await pair()
  const sink = new ReadSink()
  accepted.on('data', () => {})
  t.equal(adoptReads(accepted, sink), undefined, 'one somebody still listens to')
  t.notOk(accepted.destroyed)
  accepted.removeAllListeners('data')
  accepted.destroy()
  t.equal(adoptReads(accepted, sink), undefined, 'a destroyed one')
  client.destroy()
  server.close()
})
