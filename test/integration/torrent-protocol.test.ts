/**
 * The engine's wire behaviour as a peer sees it, through hand-rolled peers on real sockets:
 * BEP 10 block-size negotiation, BEP 6 (have-all / have-none / reject), endgame cancels,
 * connection limits, per-phase timeouts, idle eviction and the stall ban.
 */
import { createHash, randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import { bencodeDecode, bencodeEncode } from '../../lib/core/bencode.js'
import { createLogger, type Logger } from '../../lib/log/index.js'
import { Registry } from '../../lib/metrics/index.js'
import { MemoryStorage, MSG } from '../../lib/torrent/index.js'
import { makeTorrent, nobody, Peers, startEngine, until } from '../helpers/torrent.js'

const KiB = 1024

async function metric(registry: Registry, name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name)
  return (m?.values ?? []).reduce((sum, v) => sum + Number(v.value), 0)
}

/**
 * An engine logger that keeps why the engine closed each connection ('peer disconnected', or
 * a failed MSE stage), by the peer's address: what a test checks after the close it awaited.
 */
function closeReasons(): { logger: Logger; of(localPort: number): string | undefined } {
  const reasons = new Map<string, string>()
  const write = (line: string) => {
    const e = JSON.parse(line) as { msg?: string; peer?: string; reason?: string }
    if (e.peer !== undefined && e.reason !== undefined && e.msg !== 'peer banned from a torrent')
      reasons.set(e.peer, e.reason)
  }
  return {
    logger: createLogger({ level: 'debug', destination: { write } }),
    of: (localPort) => reasons.get(`127.0.0.1:${localPort}`),
  }
}

// ----- a hand-rolled peer -----

interface RawOptions {
  fast?: boolean
  /** Our BEP 10 handshake (sent when the engine's handshake arrived); none when undefined. */
  ext?: Record<string, unknown>
  /** Connect to `port`, or listen and let the engine dial us (`listen: true`). */
  listen?: boolean
  onMessage?: (p: RawPeer, id: number, payload: Buffer) => void
}

interface RawPeer {
  socket: Socket
  port: number
  /** Our end's port: the engine knows us as 127.0.0.1:localPort. */
  localPort: number
  /** true once the engine's handshake arrived, false if the connection closed first */
  replied: Promise<boolean>
  closed: Promise<void>
  messages: Array<{ id: number; payload: Buffer }>
  /** The engine's BEP 10 handshake, decoded. */
  ext: Promise<Record<string, unknown>>
  send(...bufs: Buffer[]): void
}

function handshakeBytes(infoHash: Buffer, fast: boolean, ext: boolean): Buffer {
  const reserved = Buffer.alloc(8)
  if (ext) reserved[5] = 0x10
  if (fast) reserved[7] = 0x04
  return Buffer.concat([
    Buffer.from('\x13BitTorrent protocol', 'latin1'),
    reserved,
    infoHash,
    randomBytes(20),
  ])
}

function msg(id: number, ...fields: number[]): Buffer {
  const b = Buffer.alloc(5 + 4 * fields.length)
  b.writeUInt32BE(1 + 4 * fields.length, 0)
  b[4] = id
  for (const [i, f] of fields.entries()) b.writeUInt32BE(f, 5 + 4 * i)
  return b
}

function extMsg(dict: Record<string, unknown>): Buffer {
  const body = bencodeEncode(dict)
  const h = Buffer.alloc(6)
  h.writeUInt32BE(2 + body.length, 0)
  h[4] = MSG.EXTENDED
  h[5] = 0
  return Buffer.concat([h, body])
}

function pieceMsg(index: number, offset: number, block: Buffer): Buffer {
  const head = Buffer.alloc(13)
  head.writeUInt32BE(9 + block.length, 0)
  head[4] = MSG.PIECE
  head.writeUInt32BE(index, 5)
  head.writeUInt32BE(offset, 9)
  return Buffer.concat([head, block])
}

async function rawPeer(
  t: Pick<Test, 'teardown'>,
  port: number,
  infoHash: Buffer,
  o: RawOptions = {},
): Promise<RawPeer> {
  const s = await new Promise<Socket>((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port }, () => resolve(sock))
    sock.on('error', reject)
  })
  t.teardown(() => s.destroy())
  s.on('error', () => {})
  let buf = Buffer.alloc(0)
  let shook = false
  let reply: (v: boolean) => void = () => {}
  let gotExt: (v: Record<string, unknown>) => void = () => {}
  const p: RawPeer = {
    socket: s,
    port,
    localPort: s.localPort!,
    replied: new Promise((r) => {
      reply = r
    }),
    closed: new Promise((r) => s.once('close', () => r())),
    messages: [],
    ext: new Promise((r) => {
      gotExt = r
    }),
    send: (...bufs) => {
      if (!s.destroyed) s.write(Buffer.concat(bufs))
    },
  }
  void p.closed.then(() => reply(false))
  s.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk])
    if (!shook) {
      if (buf.length < 68) return
      shook = true
      buf = buf.subarray(68)
      reply(true)
      if (o.ext) p.send(extMsg(o.ext))
    }
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0)
      if (buf.length < 4 + len) return
      const m = Buffer.from(buf.subarray(4, 4 + len))
      buf = buf.subarray(4 + len)
      if (len === 0) continue
      const id = m[0]!
      const payload = m.subarray(1)
      p.messages.push({ id, payload })
      if (id === MSG.EXTENDED && payload[0] === 0)
        gotExt(bencodeDecode(payload.subarray(1)) as Record<string, unknown>)
      o.onMessage?.(p, id, payload)
    }
  })
  s.write(handshakeBytes(infoHash, o.fast ?? true, o.ext !== undefined))
  return p
}

/** Answers every request with the right bytes of `data` (a seeder that is not the engine). */
function serveFrom(data: Buffer, pieceLength: number) {
  return (p: RawPeer, id: number, payload: Buffer) => {
    if (id !== MSG.REQUEST) return
    const index = payload.readUInt32BE(0)
    const offset = payload.readUInt32BE(4)
    const length = payload.readUInt32BE(8)
    const start = index * pieceLength + offset
    p.send(pieceMsg(index, offset, data.subarray(start, start + length)))
  }
}

const requestsOf = (p: RawPeer) =>
  p.messages
    .filter((m) => m.id === MSG.REQUEST)
    .map((m) => [m.payload.readUInt32BE(0), m.payload.readUInt32BE(4), m.payload.readUInt32BE(8)])

// ----- BEP 10 -----

t.test('BEP 10: the engine offers its block size, reqq and port to every peer', async (t) => {
  const { meta, data } = await makeTorrent(t, 512 * KiB, 256 * KiB)
  const origin = await startEngine(t, 'origin', nobody, { blockSize: 64 * KiB })
  origin.seed(meta, MemoryStorage.complete(meta, data))
  const p = await rawPeer(t, origin.port, meta.infoHash.toBuffer(), { ext: { m: {} } })
  const ext = await p.ext
  t.equal(ext.shoal_block, 64 * KiB, 'the block size offer')
  t.equal(ext.reqq, 500, 'how many requests it queues')
  t.equal(ext.p, origin.port, 'its listen port')
  const firstAfterExt = p.messages[p.messages.findIndex((m) => m.id === MSG.EXTENDED) + 1]
  t.equal(firstAfterExt?.id, MSG.HAVE_ALL, 'then BEP 6 have-all: it is complete')
})

t.test('BEP 10: requests use the smaller offer from a Shoal peer, 16 KiB from anyone else', async (t) => {
  const { meta, data } = await makeTorrent(t, 512 * KiB, 256 * KiB)
  const cases: Array<[string, Record<string, unknown> | undefined, number]> = [
    ['a Shoal peer offering 32 KiB', { m: {}, shoal_block: 32 * KiB }, 32 * KiB],
    ['a Shoal peer offering 1 MiB (ours is 256 KiB)', { m: {}, shoal_block: 1024 * KiB }, 256 * KiB],
    ['a stock client speaking BEP 10', { m: {}, v: 'aria2/1.36', reqq: 250 }, 16 * KiB],
    ['a stock client without BEP 10', undefined, 16 * KiB],
    ['a bogus offer (not a power of two)', { m: {}, shoal_block: 100_000 }, 16 * KiB],
  ]
  for (const [name, ext, size] of cases) {
    const leecher = await startEngine(t, 'agent', nobody)
    const ac = new AbortController()
    const store = new MemoryStorage(meta)
    const done = leecher.download(meta, store, { signal: ac.signal })
    const seeder = await rawPeer(t, leecher.port, meta.infoHash.toBuffer(), {
      ext,
      onMessage: serveFrom(data, meta.pieceLength),
    })
    t.ok(await seeder.replied, `${name}: connected`)
    seeder.send(msg(MSG.HAVE_ALL), msg(MSG.UNCHOKE))
    await done
    const lengths = new Set(requestsOf(seeder).map(([, , l]) => l))
    t.same([...lengths], [size], `${name}: ${size / KiB} KiB requests`)
    t.ok(store.toBuffer().equals(data), `${name}: identical bytes`)
    await leecher.stop()
  }
})

t.test("BEP 10: a zone is declared to peers; received bytes are counted by the sender's zone", async (t) => {
  const { meta, data } = await makeTorrent(t, 512 * KiB, 256 * KiB)
  const origin = await startEngine(t, 'origin', nobody, { zone: 'rack-1' })
  origin.seed(meta, MemoryStorage.complete(meta, data))
  const declared = await (await rawPeer(t, origin.port, meta.infoHash.toBuffer(), { ext: { m: {} } })).ext
  t.same(Buffer.from(declared.shoal_zone as Uint8Array).toString(), 'rack-1', 'the zone is in its handshake')
  const quiet = await startEngine(t, 'origin', nobody)
  quiet.seed(meta, MemoryStorage.complete(meta, data))
  const none = await (await rawPeer(t, quiet.port, meta.infoHash.toBuffer(), { ext: { m: {} } })).ext
  t.notOk('shoal_zone' in none, 'no zone, no key')

  // What the leecher (zone a) makes of each seeder's declaration; garbage is no zone at all.
  const cases: Array<[string, unknown, string, number]> = [
    ['the same zone', 'a', 'a', 0],
    ['another zone', 'b-2', 'b-2', meta.length],
    ['a label with a space', 'no spaces', '(none)', 0],
    ['a label too long', 'x'.repeat(65), '(none)', 0],
    ['a number', 7, '(none)', 0],
    ['a dictionary', { a: 1 }, '(none)', 0],
  ]
  for (const [name, zone, key, cross] of cases) {
    const leecher = await startEngine(t, 'agent', nobody, { zone: 'a' })
    const done = leecher.download(meta, new MemoryStorage(meta))
    const seeder = await rawPeer(t, leecher.port, meta.infoHash.toBuffer(), {
      ext: { m: {}, shoal_zone: zone },
      onMessage: serveFrom(data, meta.pieceLength),
    })
    t.ok(await seeder.replied, `${name}: connected`)
    seeder.send(msg(MSG.HAVE_ALL), msg(MSG.UNCHOKE))
    const stats = await done
    t.same(stats.bytesByZone, { [key]: meta.length }, `${name}: every byte under ${key}`)
    t.equal(stats.bytesCrossZone, cross, `${name}: ${cross} bytes crossed zones`)
    await leecher.stop()
  }
})

t.test('BEP 10: the serving side accepts the negotiated size from that peer only', async (t) => {
  const { meta, data } = await makeTorrent(t, 512 * KiB, 256 * KiB)
  const why = closeReasons()
  const origin = await startEngine(t, 'origin', nobody, { logger: why.logger })
  origin.seed(meta, MemoryStorage.complete(meta, data))
  const ih = meta.infoHash.toBuffer()
  const block = (p: RawPeer) =>
    p.messages.filter((m) => m.id === MSG.PIECE).map((m) => [m.payload.readUInt32BE(0), m.payload.length - 8])

  const shoal = await rawPeer(t, origin.port, ih, { ext: { m: {}, shoal_block: 64 * KiB } })
  await shoal.replied
  shoal.send(msg(MSG.INTERESTED))
  await until(() => shoal.messages.some((m) => m.id === MSG.UNCHOKE))
  shoal.send(msg(MSG.REQUEST, 1, 64 * KiB, 64 * KiB))
  t.ok(
    await until(() => block(shoal).length === 1),
    'a 64 KiB block is served to the peer that negotiated it',
  )
  t.same(block(shoal), [[1, 64 * KiB]])
  shoal.send(msg(MSG.REQUEST, 1, 0, 128 * KiB))
  await shoal.closed
  t.equal(
    why.of(shoal.localPort),
    `invalid request 1:0+${128 * KiB}`,
    'more than it negotiated closes the connection',
  )

  const stock = await rawPeer(t, origin.port, ih, { ext: { m: {} } })
  await stock.replied
  stock.send(msg(MSG.INTERESTED))
  await until(() => stock.messages.some((m) => m.id === MSG.UNCHOKE))
  stock.send(msg(MSG.REQUEST, 0, 0, 16 * KiB))
  t.ok(await until(() => block(stock).length === 1), 'a stock client gets 16 KiB blocks')
  stock.send(msg(MSG.REQUEST, 0, 0, 64 * KiB))
  await stock.closed
  t.equal(
    why.of(stock.localPort),
    `invalid request 0:0+${64 * KiB}`,
    'and a 64 KiB request from it closes the connection',
  )
})

// ----- BEP 6 -----

t.test(
  'BEP 6: have-all when complete, have-none when empty, a bitfield otherwise or without BEP 6',
  async (t) => {
    const { meta, data } = await makeTorrent(t, 512 * KiB, 128 * KiB)
    const ih = meta.infoHash.toBuffer()
    const seed = await startEngine(t, 'origin', nobody)
    seed.seed(meta, MemoryStorage.complete(meta, data))
    const empty = await startEngine(t, 'agent', nobody)
    const ac = new AbortController()
    t.teardown(() => ac.abort())
    empty.download(meta, new MemoryStorage(meta), { signal: ac.signal }).catch(() => {})
    const partial = await startEngine(t, 'agent', nobody)
    const half = new MemoryStorage(meta)
    await half.writePiece(1, data.subarray(128 * KiB, 256 * KiB))
    partial.seed(meta, half)

    const first = async (port: number, fast: boolean) => {
      const p = await rawPeer(t, port, ih, { fast })
      await p.replied
      await until(() => p.messages.length > 0)
      return p.messages[0]!
    }
    t.equal((await first(seed.port, true)).id, MSG.HAVE_ALL, 'seeder: have-all')
    t.equal((await first(empty.port, true)).id, MSG.HAVE_NONE, 'empty leecher: have-none')
    const bf = await first(partial.port, true)
    t.same([bf.id, [...bf.payload]], [MSG.BITFIELD, [0b0100_0000]], 'partial: a bitfield with piece 1')
    const plain = await first(seed.port, false)
    t.same(
      [plain.id, [...plain.payload]],
      [MSG.BITFIELD, [0b1111_0000]],
      'a peer without BEP 6: a full bitfield',
    )
  },
)

t.test(
  'BEP 6: requests while choked are rejected; fast messages without BEP 6 close the connection',
  async (t) => {
    const { meta, data } = await makeTorrent(t, 512 * KiB, 128 * KiB)
    const ih = meta.infoHash.toBuffer()
    const why = closeReasons()
    const seed = await startEngine(t, 'origin', nobody, { logger: why.logger })
    seed.seed(meta, MemoryStorage.complete(meta, data))
    const p = await rawPeer(t, seed.port, ih)
    await p.replied
    p.send(msg(MSG.REQUEST, 2, 0, 16 * KiB)) // not interested, so choked
    t.ok(await until(() => p.messages.some((m) => m.id === MSG.REJECT)), 'a reject comes back')
    const r = p.messages.find((m) => m.id === MSG.REJECT)!.payload
    t.same([r.readUInt32BE(0), r.readUInt32BE(4), r.readUInt32BE(8)], [2, 0, 16 * KiB], 'for that request')
    t.notOk(
      p.messages.some((m) => m.id === MSG.PIECE),
      'and no data',
    )

    const plain = await rawPeer(t, seed.port, ih, { fast: false })
    await plain.replied
    plain.send(msg(MSG.HAVE_NONE))
    await plain.closed
    t.equal(
      why.of(plain.localPort),
      `fast message ${MSG.HAVE_NONE} without BEP 6`,
      'have-none from a peer that did not negotiate BEP 6 closes it',
    )
  },
)

// ----- endgame -----

t.test(
  'endgame: the slow peer’s last blocks are fetched from the fast one and cancelled at the slow one',
  async (t) => {
    const { meta, data } = await makeTorrent(t, 1024 * KiB, 64 * KiB)
    const origin = await startEngine(t, 'origin', nobody)
    origin.seed(meta, MemoryStorage.complete(meta, data))
    // The leecher knows the fast origin; a peer that accepts requests and never answers dials in
    // first, so it holds part of the torrent when the origin's blocks run out.
    let dialOrigin = false
    const leecher = await startEngine(t, 'agent', new Peers(() => (dialOrigin ? [origin] : [])), {
      requestTimeoutMs: 60_000, // no timeout may rescue the download: only endgame can
    })
    const store = new MemoryStorage(meta)
    const done = leecher.download(meta, store, { signal: AbortSignal.timeout(20_000) })
    const slow = await rawPeer(t, leecher.port, meta.infoHash.toBuffer())
    await slow.replied
    slow.send(msg(MSG.HAVE_ALL), msg(MSG.UNCHOKE))
    t.ok(await until(() => requestsOf(slow).length > 0), 'the slow peer was asked for blocks')
    dialOrigin = true
    const began = Date.now()
    // The engine announces again soon while short of peers; meanwhile nudge nothing else.
    await done
    t.ok(store.toBuffer().equals(data), 'identical bytes')
    t.ok(Date.now() - began < 15_000, 'finished without waiting for the slow peer')
    const asked = requestsOf(slow).map((r) => r.join(':'))
    const cancelled = slow.messages
      .filter((m) => m.id === MSG.CANCEL)
      .map((m) => [m.payload.readUInt32BE(0), m.payload.readUInt32BE(4), m.payload.readUInt32BE(8)].join(':'))
    t.ok(
      cancelled.length > 0,
      `the slow peer's requests were cancelled (${cancelled.length} of ${asked.length})`,
    )
    t.ok(
      cancelled.every((c) => asked.includes(c)),
      'each cancel names a request it was sent',
    )
    t.equal(leecher.stats(meta.infoHash)?.bytesFromAgents, 0, 'no byte came from the slow peer')
  },
)

// ----- connections -----

t.test('connections: a per-host limit over all torrents', async (t) => {
  const a = await makeTorrent(t, 256 * KiB, 64 * KiB)
  const b = await makeTorrent(t, 256 * KiB, 64 * KiB)
  const seed = await startEngine(t, 'origin', nobody, { maxConnections: 2 })
  seed.seed(a.meta, MemoryStorage.complete(a.meta, a.data))
  seed.seed(b.meta, MemoryStorage.complete(b.meta, b.data))
  const p1 = await rawPeer(t, seed.port, a.meta.infoHash.toBuffer())
  const p2 = await rawPeer(t, seed.port, b.meta.infoHash.toBuffer())
  t.ok((await p1.replied) && (await p2.replied), 'two connections, one per torrent')
  const p3 = await rawPeer(t, seed.port, b.meta.infoHash.toBuffer())
  t.notOk(await p3.replied, 'a third is refused')
  p1.socket.destroy()
  t.ok(
    await until(async () => {
      const p = await rawPeer(t, seed.port, a.meta.infoHash.toBuffer())
      return p.replied
    }),
    'a closed connection makes room',
  )
})

t.test('connections: per-phase timeouts (handshake, first message)', async (t) => {
  const { meta, data } = await makeTorrent(t, 256 * KiB, 64 * KiB)
  const why = closeReasons()
  const seed = await startEngine(t, 'origin', nobody, {
    handshakeTimeoutMs: 200,
    firstMessageTimeoutMs: 300,
    logger: why.logger,
  })
  seed.seed(meta, MemoryStorage.complete(meta, data))
  const silent = await new Promise<Socket>((resolve) => {
    const s = connect({ host: '127.0.0.1', port: seed.port }, () => resolve(s))
  })
  t.teardown(() => silent.destroy())
  silent.on('error', () => {})
  const silentPort = silent.localPort!
  await new Promise((r) => silent.once('close', r))
  // Incoming connections start in the MSE stage, which has the handshake's time.
  t.equal(why.of(silentPort), 'timeout', 'no handshake: closed after handshakeTimeoutMs')
  const mute = await rawPeer(t, seed.port, meta.infoHash.toBuffer())
  t.ok(await mute.replied, 'a peer that handshakes is answered')
  await mute.closed
  t.equal(
    why.of(mute.localPort),
    'first message timeout',
    'but closed when no message follows within firstMessageTimeoutMs',
  )
  const chatty = await rawPeer(t, seed.port, meta.infoHash.toBuffer())
  await chatty.replied
  chatty.send(msg(MSG.INTERESTED))
  await new Promise((r) => setTimeout(r, 500))
  t.notOk(chatty.socket.destroyed, 'a peer that spoke stays')
})

t.test('connections: idle eviction (seeding: uninterested peers; seed to seed at once)', async (t) => {
  const { meta, data } = await makeTorrent(t, 256 * KiB, 64 * KiB)
  const why = closeReasons()
  const seed = await startEngine(t, 'origin', nobody, { seedIdleTimeoutMs: 300, logger: why.logger })
  seed.seed(meta, MemoryStorage.complete(meta, data))
  const idle = await rawPeer(t, seed.port, meta.infoHash.toBuffer())
  await idle.replied
  idle.send(msg(MSG.HAVE_NONE), msg(MSG.NOT_INTERESTED))
  await idle.closed
  t.equal(
    why.of(idle.localPort),
    'idle seed connection',
    'a peer that stays uninterested is closed after seedIdleTimeoutMs',
  )
  const other = await rawPeer(t, seed.port, meta.infoHash.toBuffer())
  await other.replied
  other.send(msg(MSG.HAVE_ALL))
  await other.closed
  t.equal(why.of(other.localPort), 'both seeding', 'a seed connecting to a seed is closed at once')
})

t.test('connections: idle eviction (downloading: no block either way)', async (t) => {
  const { meta } = await makeTorrent(t, 256 * KiB, 64 * KiB)
  const why = closeReasons()
  const leecher = await startEngine(t, 'agent', nobody, { leechIdleTimeoutMs: 300, logger: why.logger })
  const ac = new AbortController()
  t.teardown(() => ac.abort())
  leecher.download(meta, new MemoryStorage(meta), { signal: ac.signal }).catch(() => {})
  const useless = await rawPeer(t, leecher.port, meta.infoHash.toBuffer())
  await useless.replied
  useless.send(msg(MSG.HAVE_NONE))
  await useless.closed
  t.equal(
    why.of(useless.localPort),
    'idle leech connection',
    'a peer with nothing to give or take is closed after leechIdleTimeoutMs',
  )
})

t.test('stalls: a peer whose requests time out again and again is banned', async (t) => {
  const { meta } = await makeTorrent(t, 1024 * KiB, 64 * KiB)
  const registry = new Registry()
  const leecher = await startEngine(t, 'agent', nobody, { registry, requestTimeoutMs: 150, stallStrikes: 2 })
  const ac = new AbortController()
  t.teardown(() => ac.abort())
  leecher.download(meta, new MemoryStorage(meta), { signal: ac.signal }).catch(() => {})
  const staller = await rawPeer(t, leecher.port, meta.infoHash.toBuffer())
  await staller.replied
  staller.send(msg(MSG.HAVE_ALL), msg(MSG.UNCHOKE))
  await staller.closed
  t.ok((await metric(registry, 'shoal_torrent_peer_stalls_total')) >= 2, 'its stalls were counted')
  t.equal(await metric(registry, 'shoal_torrent_peer_bans_total'), 1, 'and it was banned')
  const again = await rawPeer(t, leecher.port, meta.infoHash.toBuffer())
  t.notOk(await again.replied, 'it cannot come back (from the same address)')
})

t.test('wire: 256 KiB blocks, pieces hashed on the worker thread', async (t) => {
  const { meta, data } = await makeTorrent(t, 4 * 1024 * KiB, 256 * KiB)
  const origin = await startEngine(t, 'origin', nobody)
  origin.seed(meta, MemoryStorage.complete(meta, data))
  const a = await startEngine(t, 'agent', new Peers(() => [origin]), {
    blockSize: 256 * KiB,
    hashOnWorker: true,
  })
  const store = new MemoryStorage(meta)
  await a.download(meta, store, { signal: AbortSignal.timeout(10_000) })
  t.equal(
    createHash('sha256').update(store.toBuffer()).digest('hex'),
    createHash('sha256').update(data).digest('hex'),
  )
})
