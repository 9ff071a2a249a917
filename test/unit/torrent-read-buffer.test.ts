import { once } from 'node:events'
import { type AddressInfo, connect, createServer, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { BLOCK_SIZE, type WireHandler, WireReader } from '../../lib/torrent/index.js'
import { adoptReads, READ_BUFFER, ReadSink } from '../../lib/torrent/wire/read-buffer.js'
import { encodeHandshake, encodePieceHeader } from '../../lib/torrent/wire/wire.js'

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
    nextRead: () => undefined,
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

t.test('the rest of a piece block being gathered is read in place, not copied', async (t) => {
  const { server, client, accepted } = await pair()
  const blocks: Buffer[] = []
  const handler: WireHandler = {
    onHandshake: () => {},
    onMessage: () => {},
    onProtocolError: (why) => t.fail(why),
    onPiece: (_i, _o, block) => {
      blocks.push(Buffer.from(block))
    },
  }
  const reader = new WireReader(handler)
  let reads = 0
  let inPlace = 0
  const sink = new ReadSink()
  sink.target = {
    ingest(chunk) {
      reads++
      // Not the read buffer: a region of the reader's gather buffer, which readTarget handed out.
      if (chunk.length > 0 && chunk.byteLength !== chunk.buffer.byteLength) inPlace++
      reader.push(chunk)
    },
    nextRead: () => reader.readTarget(READ_BUFFER),
  }
  const adopted = adoptReads(accepted, sink)
  t.ok(adopted)
  const hs = Buffer.alloc(68)
  encodeHandshake(hs, 0, Buffer.alloc(20, 1), Buffer.alloc(20, 2))
  const sent: Buffer[] = []
  const wire: Buffer[] = [hs]
  for (let i = 0; i < 3; i++) {
    const block = Buffer.alloc(16 * BLOCK_SIZE)
    for (let k = 0; k < block.length; k += 4) block.writeUInt32BE((i << 24) ^ k, k)
    const head = Buffer.alloc(13)
    encodePieceHeader(head, 0, i, 0, block.length)
    sent.push(block)
    wire.push(head, block)
  }
  client.write(Buffer.concat(wire))
  while (blocks.length < 3) await sleep(10)
  for (let i = 0; i < 3; i++) t.ok(blocks[i]!.equals(sent[i]!), `block ${i} arrived intact`)
  t.ok(inPlace > 0, `reads landed in place (${inPlace} of ${reads})`)
  client.destroy()
  adopted!.socket.destroy()
  server.close()
})
