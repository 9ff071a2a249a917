import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import type { MetaInfo } from '../../lib/core/index.js'
import { Registry } from '../../lib/metrics/index.js'
import {
  type AnnounceRequest,
  type AnnounceResponse,
  type BadPiece,
  DEFAULTS,
  type EngineOptions,
  MemoryStorage,
  type PeerSource,
  type TorrentEngine,
  type TorrentStorage,
} from '../../lib/torrent/index.js'
import { makeTorrent, startEngine } from '../helpers/torrent.js'

/** A tracker stand-in: hands every announcer the listed engines' addresses (itself included). */
class StaticPeerSource implements PeerSource {
  readonly events: Array<{ port: number; event: string | undefined; left: number }> = []
  constructor(private readonly peers: () => TorrentEngine[]) {}
  async announce(req: AnnounceRequest): Promise<AnnounceResponse> {
    this.events.push({ port: req.port, event: req.event, left: req.left })
    return { interval: 60, peers: this.peers().map((e) => ({ ip: '127.0.0.1', port: e.port })) }
  }
}

/** Serves correct pieces, slowly: it must not finish the download alone before others join. */
class SlowStorage implements TorrentStorage {
  constructor(
    private readonly inner: MemoryStorage,
    private readonly delayMs: number,
  ) {}
  get pieceCount() {
    return this.inner.pieceCount
  }
  hasPiece(i: number) {
    return this.inner.hasPiece(i)
  }
  async readBlock(piece: number, offset: number, length: number) {
    await new Promise((r) => setTimeout(r, this.delayMs))
    return this.inner.readBlock(piece, offset, length)
  }
  writePiece(piece: number, data: Buffer) {
    return this.inner.writePiece(piece, data)
  }
}

/** A seeder whose disk returns flipped bits. */
class CorruptStorage extends MemoryStorage {
  override async readBlock(piece: number, offset: number, length: number): Promise<Buffer> {
    const block = await super.readBlock(piece, offset, length)
    block[0]! ^= 0xff
    return block
  }
}

/**
 * A torrent seeded by an origin, and a tracker stand-in that hands out every engine in the
 * swarm; `join()` starts an agent and adds it to what the tracker hands out.
 */
async function seededSwarm(
  t: Pick<Test, 'teardown'>,
  size: number,
  pieceLength: number,
  originOptions: Partial<EngineOptions> = {},
) {
  const { meta, data } = await makeTorrent(t, size, pieceLength)
  const all: TorrentEngine[] = []
  const source = new StaticPeerSource(() => all)
  const origin = await startEngine(t, 'origin', source, originOptions)
  all.push(origin)
  const originStorage = MemoryStorage.complete(meta, data)
  origin.seed(meta, originStorage)
  const join = async () => {
    const agent = await startEngine(t, 'agent', source)
    all.push(agent)
    return agent
  }
  return { meta, data, source, origin, originStorage, join }
}

/**
 * Two seeders the tracker tells about nobody: an agent whose storage misbehaves (`Faulty`) and
 * an honest origin serving each block after `delayMs`, so that the faulty one gets its share of
 * the requests. `source` is the tracker stand-in for a leecher: the faulty seeder first.
 */
async function faultyAndHonestSeeders(
  t: Pick<Test, 'teardown'>,
  torrent: { meta: MetaInfo; data: Buffer },
  Faulty: typeof MemoryStorage,
  delayMs: number,
) {
  const { meta, data } = torrent
  const quiet = new StaticPeerSource(() => [])
  const faulty = await startEngine(t, 'agent', quiet)
  faulty.seed(meta, Faulty.complete(meta, data))
  const honest = await startEngine(t, 'origin', quiet)
  honest.seed(meta, new SlowStorage(MemoryStorage.complete(meta, data), delayMs))
  return { faulty, source: new StaticPeerSource(() => [faulty, honest]) }
}

async function metric(registry: Registry, name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name)
  return (m?.values ?? []).reduce((sum, v) => sum + Number(v.value), 0)
}

t.test('three agents download from an origin concurrently; bytes identical, accounting exact', async (t) => {
  const { meta, data, source, origin, originStorage, join } = await seededSwarm(t, 8 << 20, 256 << 10)
  origin.seed(meta, originStorage) // idempotent with the same storage
  const agents = [await join(), await join(), await join()]
  t.equal(origin.peerId.subarray(0, 8).toString(), '-SO0001-')
  t.equal(agents[0]!.peerId.subarray(0, 8).toString(), '-SA0001-')
  t.equal(agents[0]!.peerId.length, 20)

  const stores = agents.map(() => new MemoryStorage(meta))
  const began = performance.now()
  const [first, ...rest] = agents.map((a, i) => a.download(meta, stores[i]!))
  const shared = agents[0]!.download(meta, stores[0]!) // same infohash: shares the download
  const stats = await Promise.all([first!, ...rest])
  const seconds = (performance.now() - began) / 1000
  t.comment(`3 agents x 8 MiB in ${seconds.toFixed(2)} s (${((3 * 8) / seconds).toFixed(0)} MiB/s aggregate)`)
  t.same(await shared, stats[0], 'a concurrent download() call resolves with the same download')

  let uploadedByAgents = 0
  for (const [i, s] of stats.entries()) {
    t.ok(stores[i]!.toBuffer().equals(data), `agent ${i} has identical bytes`)
    t.equal(
      s.bytesFromOrigins + s.bytesFromAgents,
      meta.length,
      `agent ${i}: every verified byte credited once`,
    )
    t.equal(
      s.piecesFromOrigins + s.piecesFromAgents,
      meta.pieceCount,
      `agent ${i}: every piece credited once`,
    )
    t.ok(s.finishedAt! >= s.startedAt)
  }
  // Uploads keep counting after a download finishes (the agent seeds on), so read them now.
  for (const a of agents) uploadedByAgents += a.stats(meta.infoHash)!.bytesUploaded
  const fromAgents = stats.reduce((n, s) => n + s.bytesFromAgents, 0)
  t.ok(uploadedByAgents >= fromAgents, 'agents uploaded at least what agents received')
  t.ok(origin.stats(meta.infoHash)!.bytesUploaded >= stats.reduce((n, s) => n + s.bytesFromOrigins, 0))

  const agentPorts = new Set(agents.map((a) => a.port))
  const events = source.events.filter((e) => agentPorts.has(e.port))
  for (const a of agents) {
    const mine = events.filter((e) => e.port === a.port)
    t.equal(mine[0]?.event, 'started', 'first announce is started')
    t.equal(mine[0]?.left, meta.length)
    t.ok(
      mine.some((e) => e.event === 'completed' && e.left === 0),
      'completed is announced',
    )
  }
  t.match(
    source.events.find((e) => e.port === origin.port),
    { event: 'started', left: 0 },
    'the seeder announced with left=0',
  )
})

t.test('agents serve each other once the origin is gone (agent-to-agent credit is exact)', async (t) => {
  const { meta, data, source, origin, join } = await seededSwarm(t, 8 << 20, 256 << 10)
  const a = await join()
  const sa = await a.download(meta, new MemoryStorage(meta))
  t.equal(sa.bytesFromOrigins, meta.length, 'the first agent got everything from the origin')
  t.equal(sa.piecesFromOrigins, meta.pieceCount)
  t.equal(sa.bytesFromAgents, 0)

  const stopped = source.events.length
  origin.remove(meta.infoHash) // the origin now refuses the infohash (unknown torrent)
  t.equal(origin.stats(meta.infoHash), undefined)
  // The announce is asynchronous: polled rather than given a fixed 50 ms.
  const announcedStopped = () =>
    source.events.slice(stopped).some((e) => e.port === origin.port && e.event === 'stopped')
  for (let i = 0; i < 250 && !announcedStopped(); i++) await new Promise((r) => setTimeout(r, 20))
  t.ok(announcedStopped(), 'remove() announces stopped')

  const b = await join()
  const c = await join()
  const stores = [new MemoryStorage(meta), new MemoryStorage(meta)]
  const [sb, sc] = await Promise.all([b.download(meta, stores[0]!), c.download(meta, stores[1]!)])
  for (const [name, s, store] of [
    ['b', sb!, stores[0]!],
    ['c', sc!, stores[1]!],
  ] as const) {
    t.ok(store.toBuffer().equals(data), `agent ${name} has identical bytes`)
    t.equal(s.bytesFromOrigins, 0, `agent ${name}: nothing from origins`)
    t.equal(s.bytesFromAgents, meta.length, `agent ${name}: everything from agents`)
    t.equal(s.piecesFromAgents, meta.pieceCount)
  }
  t.ok(a.stats(meta.infoHash)!.bytesUploaded > 0, 'the first agent seeded')
})

t.test(
  'a peer sending corrupt pieces is rejected and banned; the download completes from a good seeder',
  async (t) => {
    const { meta, data } = await makeTorrent(t, 1 << 20, 64 << 10)
    const { faulty: liar, source } = await faultyAndHonestSeeders(t, { meta, data }, CorruptStorage, 3)
    const registry = new Registry()
    const leecher = await startEngine(t, 'agent', source, { registry })
    const store = new MemoryStorage(meta)
    const s = await leecher.download(meta, store, { signal: AbortSignal.timeout(20_000) })
    t.ok(store.toBuffer().equals(data), 'identical bytes despite the liar')
    t.ok((await metric(registry, 'shoal_torrent_pieces_failed_total')) >= 1, 'a bad piece was detected')
    t.ok((await metric(registry, 'shoal_torrent_peer_bans_total')) >= 1, 'the liar was banned')
    t.equal(s.piecesFromOrigins, meta.pieceCount, 'every verified piece came from the honest origin')
    t.equal(s.bytesFromAgents, 0, 'no byte from the liar survived verification')
    t.ok(liar.stats(meta.infoHash)!.bytesUploaded > 0, 'the liar did get to send')
  },
)

/** A seeder whose disk never answers: its requests must time out and move elsewhere. */
class StalledStorage extends MemoryStorage {
  override readBlock(): Promise<Buffer> {
    return new Promise(() => {})
  }
}

t.test('a stalled peer does not stall the download: its requests time out and are re-issued', async (t) => {
  const { meta, data } = await makeTorrent(t, 1 << 20, 64 << 10)
  const { faulty: stalled, source } = await faultyAndHonestSeeders(t, { meta, data }, StalledStorage, 2)
  const leecher = await startEngine(t, 'agent', source, { requestTimeoutMs: 400 })
  const store = new MemoryStorage(meta)
  const began = Date.now()
  const s = await leecher.download(meta, store, { signal: AbortSignal.timeout(15_000) })
  t.ok(store.toBuffer().equals(data), 'identical bytes')
  t.equal(s.piecesFromOrigins, meta.pieceCount, 'everything came from the responsive seeder')
  t.equal(stalled.stats(meta.infoHash)!.bytesUploaded, 0, 'the stalled seeder sent nothing')
  t.ok(Date.now() - began < 10_000, 'finished without waiting for the stalled peer')
})

function rawConnect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => resolve(s))
    s.on('error', reject)
  })
}

function closedWithin(s: Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (s.destroyed || s.readableEnded) return resolve(true)
    const timer = setTimeout(() => {
      s.destroy()
      resolve(false)
    }, ms)
    s.on('error', () => {})
    s.resume() // drain whatever the engine sends (its handshake, bitfield...)
    s.once('close', () => {
      clearTimeout(timer)
      resolve(true)
    })
    s.once('end', () => {
      clearTimeout(timer)
      s.destroy()
      resolve(true)
    })
  })
}

function handshake(infoHash: Buffer, peerId: Buffer = randomBytes(20)): Buffer {
  const reserved = Buffer.alloc(8)
  reserved[7] = 0x04 // fast extension, like our own peers
  return Buffer.concat([Buffer.from('\x13BitTorrent protocol', 'latin1'), reserved, infoHash, peerId])
}

function msg(id: number, ...fields: number[]): Buffer {
  const b = Buffer.alloc(5 + 4 * fields.length)
  b.writeUInt32BE(1 + 4 * fields.length, 0)
  b[4] = id
  for (const [i, f] of fields.entries()) b.writeUInt32BE(f, 5 + 4 * i)
  return b
}

t.test('hostile wire input closes the connection, never the engine', async (t) => {
  const { meta, data, origin, join } = await seededSwarm(t, 1 << 20, 64 << 10, { handshakeTimeoutMs: 300 })
  const ih = meta.infoHash.toBuffer()
  const cases: Array<[string, Buffer]> = [
    ['HTTP garbage', Buffer.from('GET /announce HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['random bytes', randomBytes(4096)],
    ['unknown infohash', handshake(randomBytes(20))],
    [
      'giant length prefix',
      Buffer.concat([handshake(ih), Buffer.from([0x7f, 0xff, 0xff, 0xf0]), randomBytes(64 << 10)]),
    ],
    [
      'length prefix with the top bit set',
      Buffer.concat([handshake(ih), Buffer.from([0xff, 0xff, 0xff, 0xff, 4])]),
    ],
    ['truncated have', Buffer.concat([handshake(ih), Buffer.from([0, 0, 0, 1, 4])])],
    [
      'bitfield of the wrong size',
      Buffer.concat([handshake(ih), Buffer.from([0, 0, 0, 10, 5]), Buffer.alloc(9, 0xff)]),
    ],
    ['have out of range', Buffer.concat([handshake(ih), msg(4, 1_000_000)])],
    ['oversized request', Buffer.concat([handshake(ih), msg(2), msg(6, 0, 0, 1 << 20)])],
    [
      'request past the piece end',
      Buffer.concat([handshake(ih), msg(2), msg(6, 0, (64 << 10) - 100, 16 << 10)]),
    ],
    ['request for a missing piece index', Buffer.concat([handshake(ih), msg(2), msg(6, 999, 0, 16 << 10)])],
    ['silence (handshake timeout)', Buffer.alloc(0)],
  ]
  for (const [name, bytes] of cases) {
    const s = await rawConnect(origin.port)
    if (bytes.length > 0) s.write(bytes)
    t.ok(await closedWithin(s, 3000), `${name}: connection closed by the engine`)
  }

  const agent = await join()
  const store = new MemoryStorage(meta)
  const s = await agent.download(meta, store, { signal: AbortSignal.timeout(10_000) })
  t.ok(store.toBuffer().equals(data), 'a good download still works afterwards')
  t.equal(s.piecesFromOrigins, meta.pieceCount)
})

t.test('download rejects with TIMEOUT / ABORTED and leaves nothing running', async (t) => {
  const { meta } = await makeTorrent(t, 256 << 10, 64 << 10)
  const lonely = await startEngine(t, 'agent', new StaticPeerSource(() => []))
  await t.rejects(lonely.download(meta, new MemoryStorage(meta), { signal: AbortSignal.timeout(200) }), {
    code: 'TIMEOUT',
  })
  t.equal(lonely.stats(meta.infoHash), undefined, 'the abandoned download was removed')
  const ac = new AbortController()
  const p = lonely.download(meta, new MemoryStorage(meta), { signal: ac.signal })
  ac.abort()
  await t.rejects(p, { code: 'ABORTED' })
  const q = lonely.download(meta, new MemoryStorage(meta))
  lonely.remove(meta.infoHash)
  await t.rejects(q, { code: 'ABORTED' }, 'remove() rejects pending downloads')
  await lonely.stop()
  await lonely.stop() // idempotent
  await t.rejects(lonely.download(meta, new MemoryStorage(meta)), { code: 'ABORTED' })
})

/** A piece message: `block` at `offset` of piece `index`. */
function pieceMsg(index: number, offset: number, block: Buffer): Buffer {
  const head = Buffer.alloc(13)
  head.writeUInt32BE(9 + block.length, 0)
  head[4] = 7
  head.writeUInt32BE(index, 5)
  head.writeUInt32BE(offset, 9)
  return Buffer.concat([head, block])
}

/**
 * A hand-rolled peer: connects, handshakes with `peerId`, and calls `onMessage` for every
 * message the engine sends. `replied` resolves true once the engine's handshake arrived, false
 * if the connection closed first; `closed` resolves when the connection is gone.
 */
async function rawPeer(
  port: number,
  infoHash: Buffer,
  onMessage: (s: Socket, id: number, payload: Buffer) => void = () => {},
  peerId: Buffer = randomBytes(20),
) {
  const s = await rawConnect(port)
  let buf = Buffer.alloc(0)
  let shook = false
  let reply: (v: boolean) => void = () => {}
  const replied = new Promise<boolean>((resolve) => {
    reply = resolve
  })
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()))
  void closed.then(() => reply(false))
  s.on('error', () => {})
  s.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk])
    if (!shook) {
      if (buf.length < 68) return
      shook = true
      buf = buf.subarray(68)
      reply(true)
    }
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0)
      if (buf.length < 4 + len) return
      const m = buf.subarray(4, 4 + len)
      buf = buf.subarray(4 + len)
      if (len > 0) onMessage(s, m[0]!, m.subarray(1))
    }
  })
  s.write(handshake(infoHash, peerId))
  return { socket: s, replied, closed }
}

t.test(
  'blocks nobody requested from a peer are dropped: a sprayer cannot get honest peers banned',
  async (t) => {
    // The origin serves slowly, so its pieces are in flight while the sprayer fires junk at them.
    const { meta, data } = await makeTorrent(t, 1 << 20, 64 << 10)
    const all: TorrentEngine[] = []
    const origin = await startEngine(t, 'origin', new StaticPeerSource(() => []))
    origin.seed(meta, new SlowStorage(MemoryStorage.complete(meta, data), 5))
    all.push(origin)
    const registry = new Registry()
    const leecher = await startEngine(t, 'agent', new StaticPeerSource(() => all), { registry })
    const store = new MemoryStorage(meta)
    const download = leecher.download(meta, store, { signal: AbortSignal.timeout(10_000) })

    // It announces no pieces (so nothing is requested from it) and sprays every block of every
    // piece, with junk, over and over until the download is over.
    const sprayer = await rawPeer(leecher.port, meta.infoHash.toBuffer())
    t.ok(await sprayer.replied, 'the sprayer is connected')
    let sprayed = 0
    const junk = randomBytes(16 << 10)
    const spray = setInterval(() => {
      if (sprayer.socket.destroyed || sprayer.socket.writableLength > 1 << 20) return
      for (let i = 0; i < meta.pieceCount; i++) {
        for (let o = 0; o < meta.pieceSize(i); o += 16 << 10) sprayer.socket.write(pieceMsg(i, o, junk))
        sprayed++
      }
    }, 5)
    t.teardown(() => {
      clearInterval(spray)
      sprayer.socket.destroy()
    })
    const s = await download
    clearInterval(spray)
    t.ok(sprayed > 2 * meta.pieceCount, `the sprayer sent every piece many times (${sprayed} pieces)`)
    t.ok(store.toBuffer().equals(data), 'identical bytes')
    t.equal(s.piecesFromOrigins, meta.pieceCount, 'every piece came from the origin')
    t.equal(await metric(registry, 'shoal_torrent_pieces_failed_total'), 0, 'no junk block entered a piece')
    t.equal(await metric(registry, 'shoal_torrent_peer_bans_total'), 0, 'nobody was banned, the origin least')
  },
)

t.test('a banned incoming peer cannot come back under a new peer id', async (t) => {
  const { meta } = await makeTorrent(t, 256 << 10, 64 << 10)
  const registry = new Registry()
  const leecher = await startEngine(t, 'agent', new StaticPeerSource(() => []), { registry })
  const ac = new AbortController()
  const download = leecher.download(meta, new MemoryStorage(meta), { signal: ac.signal })
  t.teardown(() => ac.abort())
  const ih = meta.infoHash.toBuffer()

  // A liar dials in, has everything, and answers every request with junk: it is the sole
  // source of a piece that fails SHA-1, so it is banned.
  const liar = await rawPeer(leecher.port, ih, (s, id, p) => {
    if (id === 6) s.write(pieceMsg(p.readUInt32BE(0), p.readUInt32BE(4), randomBytes(p.readUInt32BE(8))))
  })
  t.ok(await liar.replied, 'the liar was let in')
  liar.socket.write(Buffer.concat([msg(0x0e), msg(1)])) // have-all, unchoke
  await liar.closed
  t.equal(await metric(registry, 'shoal_torrent_peer_bans_total'), 1, 'the liar was banned')

  for (const attempt of ['a new peer id', 'another new peer id']) {
    const again = await rawPeer(leecher.port, ih)
    const replied = await again.replied
    again.socket.destroy()
    t.notOk(replied, `${attempt} from the same address is refused`)
  }
  ac.abort()
  await t.rejects(download, { code: 'ABORTED' })
})

t.test('an infohash open with one storage refuses another until removed', async (t) => {
  const { meta, data, join } = await seededSwarm(t, 1 << 20, 64 << 10)
  const agent = await join()
  // The agent's situation: the download finished into one file, the whole-blob check then
  // failed, and it fetches again into a fresh file.
  const first = new MemoryStorage(meta)
  await agent.download(meta, first, { signal: AbortSignal.timeout(10_000) })
  agent.seed(meta, first) // the same storage: idempotent
  const fresh = new MemoryStorage(meta)
  await t.rejects(agent.download(meta, fresh), {
    code: 'TORRENT_ERROR',
    message: /another storage; remove\(\) it first/,
  })
  t.throws(() => agent.seed(meta, MemoryStorage.complete(meta, data)), { code: 'TORRENT_ERROR' })
  t.equal(fresh.toBuffer().equals(data), false, 'the fresh storage was not quietly ignored as done')
  agent.remove(meta.infoHash)
  const s = await agent.download(meta, fresh, { signal: AbortSignal.timeout(10_000) })
  t.ok(fresh.toBuffer().equals(data), 'after remove() the fresh storage is downloaded into')
  t.equal(s.piecesFromOrigins + s.piecesFromAgents, meta.pieceCount)

  // A download still running is not handed a second storage either.
  const lonely = await startEngine(t, 'agent', new StaticPeerSource(() => []))
  const pending = lonely.download(meta, new MemoryStorage(meta))
  await t.rejects(lonely.download(meta, new MemoryStorage(meta), { signal: AbortSignal.timeout(2000) }), {
    code: 'TORRENT_ERROR',
    message: /downloading/,
  })
  lonely.remove(meta.infoHash)
  await t.rejects(pending, { code: 'ABORTED' })
})

t.test('a ban is per torrent: a peer banned for a bad copy of one blob still serves another', async (t) => {
  const bad = await makeTorrent(t, 256 << 10, 64 << 10)
  const good = await makeTorrent(t, 256 << 10, 64 << 10)
  const quiet = new StaticPeerSource(() => [])
  const seeder = await startEngine(t, 'agent', quiet)
  seeder.seed(bad.meta, CorruptStorage.complete(bad.meta, bad.data))
  seeder.seed(good.meta, MemoryStorage.complete(good.meta, good.data))
  const registry = new Registry()
  const leecher = await startEngine(t, 'agent', new StaticPeerSource(() => [seeder]), { registry })
  const banned: BadPiece[] = []
  const ac = new AbortController()
  t.teardown(() => ac.abort())
  const first = leecher.download(bad.meta, new MemoryStorage(bad.meta), {
    signal: ac.signal,
    onBadPiece: (b) => banned.push(b),
  })
  first.catch(() => undefined)
  while (banned.length === 0) await new Promise((r) => setTimeout(r, 20))
  t.equal(banned[0]!.cls, 'agent')
  t.equal(banned[0]!.banMs, DEFAULTS.banMs, 'an agent is banned for the full banMs')
  t.equal(banned[0]!.peer, `127.0.0.1:${seeder.port}`, 'the report names the address it was dialled at')
  const store = new MemoryStorage(good.meta)
  await leecher.download(good.meta, store, { signal: AbortSignal.timeout(20_000) })
  t.ok(store.toBuffer().equals(good.data), 'the other blob came from the same peer')
  ac.abort()
})

t.test(
  'an origin that sent a bad piece is banned briefly, then used again once its copy is good',
  async (t) => {
    const { meta, data } = await makeTorrent(t, 256 << 10, 64 << 10)
    const origin = await startEngine(t, 'origin', new StaticPeerSource(() => []))
    origin.seed(meta, CorruptStorage.complete(meta, data))
    const leecher = await startEngine(t, 'agent', new StaticPeerSource(() => [origin]), { originBanMs: 500 })
    const banned: BadPiece[] = []
    const store = new MemoryStorage(meta)
    const download = leecher.download(meta, store, {
      signal: AbortSignal.timeout(30_000),
      onBadPiece: (b) => {
        banned.push(b)
        // What an origin does once told: drop the bad copy, serve the good one.
        origin.remove(meta.infoHash)
        origin.seed(meta, MemoryStorage.complete(meta, data))
      },
    })
    const s = await download
    t.ok(store.toBuffer().equals(data), 'identical bytes, all from the repaired origin')
    t.equal(banned.length, 1, 'one bad piece, one report')
    t.equal(banned[0]!.cls, 'origin')
    t.equal(banned[0]!.banMs, 500, 'the origin got the short ban')
    t.equal(s.piecesFromOrigins, meta.pieceCount)
  },
)
