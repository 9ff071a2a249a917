/**
 * Hostile peers on real sockets (hardening issue, item 4): fake peers that handshake, say
 * "interested" and never ask for anything must not starve a real one, and silent connections
 * from one address must not block everyone else. Linux routes all of 127.0.0.0/8 to loopback,
 * so sockets bound to 127.0.0.2, 127.0.0.3, ... come from other addresses than the real
 * engine (127.0.0.1). Every wait is on an event or a condition with a generous deadline.
 */
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import { Registry } from '../../lib/metrics/index.js'
import { MemoryStorage, MSG } from '../../lib/torrent/index.js'
import { makeTorrent, nobody, Peers, startEngine, until } from '../helpers/torrent.js'

const KiB = 1024

function handshake(infoHash: Buffer): Buffer {
  const reserved = Buffer.alloc(8)
  reserved[7] = 0x04 // BEP 6
  return Buffer.concat([
    Buffer.from('\x13BitTorrent protocol', 'latin1'),
    reserved,
    infoHash,
    randomBytes(20),
  ])
}

function msg(id: number): Buffer {
  const b = Buffer.alloc(5)
  b.writeUInt32BE(1, 0)
  b[4] = id
  return b
}
const KEEP_ALIVE = Buffer.alloc(4)

/** A TCP connection to the engine from `from` (a loopback address), connected. */
async function open(t: Pick<Test, 'teardown'>, port: number, from: string): Promise<Socket> {
  const s = await new Promise<Socket>((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port, localAddress: from }, () => resolve(sock))
    sock.once('error', reject)
  })
  s.on('error', () => {})
  t.teardown(() => s.destroy())
  return s
}

interface Fake {
  socket: Socket
  /** true once the engine answered the handshake and took the peer (its have-all came). */
  attached: Promise<boolean>
  unchoked: boolean
}

/**
 * A fake peer: a valid handshake for the infohash, have-none and interested, then a keep-alive
 * every second; it never requests anything.
 */
async function fake(t: Pick<Test, 'teardown'>, port: number, infoHash: Buffer, from: string): Promise<Fake> {
  const socket = await open(t, port, from)
  let buf = Buffer.alloc(0)
  let settle: (v: boolean) => void = () => {}
  const f: Fake = {
    socket,
    attached: new Promise((r) => {
      settle = r
    }),
    unchoked: false,
  }
  socket.once('close', () => settle(false))
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk])
    if (buf.length < 68) return
    // Messages after the 68-byte handshake: have-all means we were attached.
    let at = 68
    while (buf.length >= at + 4) {
      const len = buf.readUInt32BE(at)
      if (buf.length < at + 4 + len) break
      const id = buf[at + 4]
      if (len > 0 && id === MSG.HAVE_ALL) settle(true)
      if (len > 0 && id === MSG.UNCHOKE) f.unchoked = true
      if (len > 0 && id === MSG.CHOKE) f.unchoked = false
      at += 4 + len
    }
    buf = Buffer.concat([buf.subarray(0, 68), buf.subarray(at)])
  })
  socket.write(Buffer.concat([handshake(infoHash), msg(MSG.HAVE_NONE), msg(MSG.INTERESTED)]))
  const timer = setInterval(() => {
    if (!socket.destroyed) socket.write(KEEP_ALIVE)
  }, 1_000)
  socket.once('close', () => clearInterval(timer))
  t.teardown(() => clearInterval(timer))
  return f
}

const openCount = (sockets: Socket[]) => sockets.filter((s) => !s.destroyed).length

t.test('50 fake peers from 50 addresses that never ask for a block do not starve a real agent', async (t) => {
  const { meta, data } = await makeTorrent(t, 1024 * KiB, 64 * KiB)
  // The contended-torrent eviction is tested below; here only what makes room for the agent.
  const origin = await startEngine(t, 'origin', nobody, { idlePeerEvictMs: 10 * 60_000 })
  origin.seed(meta, MemoryStorage.complete(meta, data))
  const ih = meta.infoHash.toBuffer()
  const fakes: Fake[] = []
  for (let i = 0; i < 50; i++) fakes.push(await fake(t, origin.port, ih, `127.0.0.${10 + i}`))
  const attached = await Promise.all(fakes.map((f) => f.attached))
  t.equal(attached.filter(Boolean).length, 50, 'the fakes fill the torrent’s 50 connections')
  t.ok(await until(() => fakes.filter((f) => f.unchoked).length === 32), 'and its 32 upload slots')

  const agent = await startEngine(t, 'agent', new Peers(() => [origin]))
  const store = new MemoryStorage(meta)
  const began = Date.now()
  // Before: the agent's handshakes were refused for as long as the fakes stayed (for good).
  const stats = await agent.download(meta, store, { signal: AbortSignal.timeout(60_000) })
  t.ok(store.toBuffer().equals(data), 'the agent got every byte')
  t.equal(stats.bytesFromOrigins, meta.length, 'from the origin')
  t.comment(`downloaded in ${((Date.now() - began) / 1000).toFixed(1)} s among 50 fakes`)
  const left = openCount(fakes.map((f) => f.socket))
  t.ok(left >= 45, `the fakes stayed connected meanwhile (${left} of 50): room was made, not a purge`)
})

t.test('fake peers from one address hold at most maxConnectionsPerIpPerTorrent connections', async (t) => {
  const { meta, data } = await makeTorrent(t, 1024 * KiB, 64 * KiB)
  const origin = await startEngine(t, 'origin', nobody)
  origin.seed(meta, MemoryStorage.complete(meta, data))
  const ih = meta.infoHash.toBuffer()
  const fakes: Fake[] = []
  const attached: boolean[] = []
  for (let i = 0; i < 50; i++) {
    const f = await fake(t, origin.port, ih, '127.0.0.2')
    fakes.push(f)
    attached.push(await f.attached) // one at a time: the pending limit is not what this tests
  }
  t.equal(attached.filter(Boolean).length, 8, 'eight are taken, the rest refused')
  t.ok(await until(() => openCount(fakes.map((f) => f.socket)) === 8), 'and closed')
  const other = await fake(t, origin.port, ih, '127.0.0.3')
  t.ok(await other.attached, 'another address is still welcome')

  const agent = await startEngine(t, 'agent', new Peers(() => [origin]))
  const store = new MemoryStorage(meta)
  await agent.download(meta, store, { signal: AbortSignal.timeout(30_000) })
  t.ok(store.toBuffer().equals(data), 'a real agent downloads at once')
})

t.test('a contended torrent closes peers that wasted their upload slot', async (t) => {
  const { meta, data } = await makeTorrent(t, 256 * KiB, 64 * KiB)
  const registry = new Registry()
  const origin = await startEngine(t, 'origin', nobody, {
    uploadSlots: 2,
    slotIdleMs: 200,
    idlePeerEvictMs: 500,
    registry,
  })
  origin.seed(meta, MemoryStorage.complete(meta, data))
  const ih = meta.infoHash.toBuffer()
  const fakes: Fake[] = []
  for (let i = 0; i < 4; i++) fakes.push(await fake(t, origin.port, ih, `127.0.0.${10 + i}`))
  t.ok((await Promise.all(fakes.map((f) => f.attached))).every(Boolean), 'four fakes for two slots')
  t.ok(
    await until(() => openCount(fakes.map((f) => f.socket)) <= 2),
    'idle fakes are closed while others wait for a slot',
  )
  t.match(await registry.metrics(), /shoal_torrent_peers_evicted_total [1-9]/, 'and counted')
})

t.test('300 silent connections from one address do not block a peer from another', async (t) => {
  const { meta, data } = await makeTorrent(t, 256 * KiB, 64 * KiB)
  // Long timeouts: the flood stays in place for the whole test, as it would at any moment.
  const registry = new Registry()
  const origin = await startEngine(t, 'origin', nobody, {
    handshakeTimeoutMs: 120_000,
    incomingHandshakeTimeoutMs: 120_000,
    registry,
  })
  origin.seed(meta, MemoryStorage.complete(meta, data))
  const silent: Socket[] = []
  for (let i = 0; i < 300; i++) silent.push(await open(t, origin.port, '127.0.0.2'))
  t.ok(
    await until(() => openCount(silent) === 8),
    `all but maxPendingPerIp (8) of them are refused (${openCount(silent)} open)`,
  )
  // Before: 256 of them held every pending place for handshakeTimeoutMs; each new connection was dropped.
  const f = await fake(t, origin.port, meta.infoHash.toBuffer(), '127.0.0.1')
  t.ok(await f.attached, 'a peer from another address handshakes and is taken')
  t.equal(openCount(silent), 8, 'while the flood is still there')
  t.match(
    await registry.metrics(),
    /shoal_torrent_connections_refused_total\{reason="address_pending"\} 292\b/,
    'each refusal counted with the limit it hit',
  )
})

t.test('incoming connections get incomingHandshakeTimeoutMs to handshake', async (t) => {
  const { meta, data } = await makeTorrent(t, 256 * KiB, 64 * KiB)
  const origin = await startEngine(t, 'origin', nobody, { incomingHandshakeTimeoutMs: 300 })
  origin.seed(meta, MemoryStorage.complete(meta, data))
  const s = await open(t, origin.port, '127.0.0.2')
  // handshakeTimeoutMs (10 s) no longer applies to them: well before it, the socket is closed.
  t.ok(await until(() => s.destroyed || s.readableEnded, 5_000), 'a silent connection is closed early')
})

t.test('an address is limited to maxConnectionsPerIp over all torrents', async (t) => {
  const a = await makeTorrent(t, 256 * KiB, 64 * KiB)
  const b = await makeTorrent(t, 256 * KiB, 64 * KiB)
  const origin = await startEngine(t, 'origin', nobody, { maxConnectionsPerIp: 2 })
  origin.seed(a.meta, MemoryStorage.complete(a.meta, a.data))
  origin.seed(b.meta, MemoryStorage.complete(b.meta, b.data))
  const p1 = await fake(t, origin.port, a.meta.infoHash.toBuffer(), '127.0.0.2')
  const p2 = await fake(t, origin.port, b.meta.infoHash.toBuffer(), '127.0.0.2')
  t.ok((await p1.attached) && (await p2.attached), 'two connections from one address')
  const p3 = await fake(t, origin.port, b.meta.infoHash.toBuffer(), '127.0.0.2')
  t.notOk(await p3.attached, 'a third from it is refused')
  const p4 = await fake(t, origin.port, b.meta.infoHash.toBuffer(), '127.0.0.3')
  t.ok(await p4.attached, 'one from another address is not')
  p1.socket.destroy()
  let again = false
  for (let i = 0; i < 50 && !again; i++) {
    await new Promise((r) => setTimeout(r, 50))
    again = await (await fake(t, origin.port, a.meta.infoHash.toBuffer(), '127.0.0.2')).attached
  }
  t.ok(again, 'a closed connection makes room')
})
