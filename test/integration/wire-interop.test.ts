/**
 * Shoal's wire codec against an independent implementation: bittorrent-protocol's Wire (the
 * library the engine started on) as a leecher of a Shoal seeder and as a seeder for a Shoal
 * agent, over real sockets. aria2 is the other independent peer (test/e2e/aria2.test.ts).
 */
import { randomBytes } from 'node:crypto'
import { connect, createServer, type Socket } from 'node:net'
import Wire from 'bittorrent-protocol'
import t, { type Test } from 'tap'
import { MemoryStorage } from '../../lib/torrent/index.js'
import { makeTorrent, startEngine } from '../helpers/torrent.js'

const BLOCK = 16 << 10

/** An engine whose tracker stand-in hands out `peers()`. */
function engine(t: Test, role: 'origin' | 'agent', peers: () => Array<{ ip: string; port: number }>) {
  return startEngine(t, role, { announce: async () => ({ interval: 60, peers: peers() }) })
}

/** Pipes a socket through a bittorrent-protocol Wire. */
function wireOn(socket: Socket): Wire {
  const wire = new Wire()
  socket.pipe(wire as unknown as NodeJS.WritableStream)
  ;(wire as unknown as NodeJS.ReadableStream).pipe(socket)
  socket.on('error', () => wire.destroy())
  wire.on('error', () => socket.destroy())
  return wire
}

t.test('a bittorrent-protocol leecher downloads every block from a Shoal seeder', async (t) => {
  const { meta, data } = await makeTorrent(t, (2 << 20) + 12345, 256 << 10)
  const seeder = await engine(t, 'origin', () => [])
  seeder.seed(meta, MemoryStorage.complete(meta, data))

  const socket = connect(seeder.port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  const wire = wireOn(socket)
  const got = Buffer.alloc(data.length)
  const done = new Promise<number>((resolve, reject) => {
    wire.once('unchoke', () => {
      let outstanding = 0
      let received = 0
      for (let piece = 0; piece < meta.pieceCount; piece++) {
        for (let offset = 0; offset < meta.pieceSize(piece); offset += BLOCK) {
          const length = Math.min(BLOCK, meta.pieceSize(piece) - offset)
          outstanding++
          wire.request(piece, offset, length, (err, block) => {
            if (err || !block) return reject(err ?? new Error('empty block'))
            Buffer.from(block).copy(got, piece * meta.pieceLength + offset)
            received += block.length
            if (--outstanding === 0) resolve(received)
          })
        }
      }
    })
    wire.on('close', () => reject(new Error('seeder closed the connection')))
  })
  let seederHasAll = false
  wire.on('have-all', () => (seederHasAll = true))
  wire.on(
    'bitfield',
    (bits) => (seederHasAll = Array.from({ length: meta.pieceCount }, (_, i) => bits.get(i)).every(Boolean)),
  )
  wire.on('handshake', () => wire.interested())
  wire.handshake(meta.infoHash.hex, randomBytes(20), { dht: false, fast: true })

  t.equal(await done, data.length, 'every byte arrived')
  t.ok(got.equals(data), "and they are the torrent's bytes")
  t.ok(seederHasAll, 'the seeder announced a full bitfield (or have-all)')
  wire.destroy()
})

t.test('a Shoal agent downloads from a bittorrent-protocol seeder', async (t) => {
  const { meta, data } = await makeTorrent(t, (1 << 20) + 777, 256 << 10)
  const full = Buffer.alloc(Math.ceil(meta.pieceCount / 8))
  for (let i = 0; i < meta.pieceCount; i++)
    full.writeUInt8(full.readUInt8(i >> 3) | (0x80 >> (i & 7)), i >> 3)
  let served = 0
  const server = createServer((socket) => {
    const wire = wireOn(socket)
    wire.on('handshake', () => {
      wire.handshake(meta.infoHash.hex, randomBytes(20), { dht: false })
      wire.bitfield(full)
    })
    wire.on('interested', () => wire.unchoke())
    wire.on('request', (piece, offset, length, respond) => {
      served += length
      const start = piece * meta.pieceLength + offset
      respond(null, data.subarray(start, start + length))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const port = (server.address() as { port: number }).port

  const agent = await engine(t, 'agent', () => [{ ip: '127.0.0.1', port }])
  const storage = new MemoryStorage(meta)
  const stats = await agent.download(meta, storage, { signal: AbortSignal.timeout(20_000) })
  t.ok(storage.toBuffer().equals(data), 'identical bytes')
  t.equal(stats.bytesFromAgents, data.length, 'all from the stock peer (it is not an origin)')
  t.equal(served, data.length, 'in 16 KiB blocks the stock peer served exactly once each')
  agent.remove(meta.infoHash)
})
