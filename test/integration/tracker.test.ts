import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect } from 'node:net'
import { join } from 'node:path'
import bencode from 'bencode'
import t, { type Test } from 'tap'
import { Digest, digestFile, InfoHash, MetaInfo } from '../../lib/core/index.js'
import { HttpClient, HttpServer, sendJson } from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { encodeBytes, TrackerClient } from '../../lib/tracker/client/index.js'
import { randomFile, tempDir } from '../helpers/files.js'
import { peerIdOf as peerIdFor, startTestTracker } from '../helpers/tracker.js'

const logger = silentLogger()
// Bytes above 0x7f and '+', '%', '&' in the infohash exercise the byte-wise query encoding.
const INFO_HASH = InfoHash.fromBytes(Buffer.from('2b2526ff80c3287a2f3f23fe017f30a0b0c0d0e0', 'hex'))
const ORIGIN_PEER_PORT = 15991

const PEER_PREFIX = '-SA0001-'
const peerIdOf = (n: number) => peerIdFor(PEER_PREFIX, n)

/**
 * A fake origin that serves one .torrent and counts requests; 404 for anything else. It names
 * the digest's owners when `owners` is given (as a real origin's ring does), else it cannot tell.
 */
async function fakeOrigin(t: Test, dir: string, owners?: () => string[]) {
  const file = join(dir, 'blob.bin')
  await randomFile(file, 300_000)
  const { digest, size } = await digestFile(file)
  const meta = await MetaInfo.create(file, {
    name: digest.hex,
    announce: 'http://127.0.0.1:15003/announce',
    size,
  })
  let requests = 0
  const server = new HttpServer({ name: 'fake-origin', logger })
  server.router.get('/namespace/:ns/blobs/:digest/metainfo', async ({ res, params }) => {
    requests++
    await new Promise((r) => setTimeout(r, 30)) // long enough for concurrent requests to pile up
    if (params.digest !== digest.toString()) {
      sendJson(res, 404, { code: 'BLOB_NOT_FOUND', message: `${params.digest} is not here` })
      return
    }
    res.writeHead(200, { 'content-type': 'application/x-bittorrent', 'content-length': meta.raw.length })
    res.end(meta.raw)
  })
  if (owners)
    server.router.get('/blobs/:digest/locations', ({ res }) => sendJson(res, 200, { locations: owners() }))
  const addr = await server.start(0, '127.0.0.1')
  t.teardown(() => server.stop())
  return { digest, meta, http: `127.0.0.1:${addr.port}`, requests: () => requests }
}

/** A port nothing listens on: bound once, then released. */
async function deadPort(): Promise<number> {
  const s = new HttpServer({ name: 'dead', logger })
  const addr = await s.start(0, '127.0.0.1')
  await s.stop()
  return addr.port
}

async function setup(t: Test, over: Record<string, unknown> = {}) {
  const dir = await tempDir(t)
  const origin = await fakeOrigin(t, dir)
  const { tracker, client, announce, config } = await startTestTracker(t, {
    infoHash: INFO_HASH,
    peerIdPrefix: PEER_PREFIX,
    settings: {
      announceInterval: 10,
      minInterval: 5,
      peerTtlSeconds: 30,
      origins: [{ peer: `127.0.0.1:${ORIGIN_PEER_PORT}`, http: origin.http }],
      ...over,
    },
  })
  const raw = async (query: string) => {
    const res = await fetch(`${tracker.url}/announce?${query}`)
    return {
      status: res.status,
      type: res.headers.get('content-type'),
      body: bencode.decode(new Uint8Array(await res.arrayBuffer())) as Record<string, unknown>,
    }
  }
  return { tracker, client, announce, raw, origin, config }
}

const text = (v: unknown) => Buffer.from(v as Uint8Array).toString()

t.test('several fake peers get ordered compact lists', async (t) => {
  const { announce, tracker } = await setup(t)
  t.equal(await new HttpClient(tracker.url, { name: 'tracker' }).status('GET', '/readiness'), 200)
  for (let i = 1; i <= 4; i++) await announce(i, 7000 + i, 1000)
  await announce(11, 7011, 0)
  await announce(12, 7012, 500, { event: 'completed' })
  await announce(99, ORIGIN_PEER_PORT, 0)

  const res = await announce(50, 7050, 1000)
  t.equal(res.interval, 10)
  const ports = res.peers.map((p) => p.port)
  t.equal(ports.length, 7, 'everyone but itself')
  t.equal(ports[0], ORIGIN_PEER_PORT, 'the configured origin first')
  t.same(ports.slice(1, 3).sort(), [7011, 7012], 'then the complete peers')
  t.same(ports.slice(3).sort(), [7001, 7002, 7003, 7004], 'then the rest')
  t.ok(
    res.peers.every((p) => p.ip === '127.0.0.1'),
    'socket addresses',
  )
  t.notOk(ports.includes(7050), 'never itself')

  const capped = await announce(50, 7050, 1000, { numwant: 2 })
  t.same(
    capped.peers.map((p) => p.port),
    [ORIGIN_PEER_PORT, capped.peers[1]?.port],
  )
  t.ok([7011, 7012].includes(capped.peers[1]?.port as number), 'numwant keeps the best')

  const metrics = await new HttpClient(tracker.url, { name: 'tracker' }).buffer('GET', '/metrics')
  t.match(metrics.toString(), /shoal_tracker_announces_total\{result="ok",event="started"/)
  t.match(metrics.toString(), /shoal_tracker_peers_handed_out_total\{class="origin"/)
  t.match(metrics.toString(), /shoal_tracker_swarms\{[^}]*\} 1/)
  t.match(metrics.toString(), /shoal_tracker_peers\{class="leecher"[^}]*\} 5/)
})

t.test('non-compact response shape', async (t) => {
  const { announce, raw } = await setup(t)
  await announce(1, 7001, 0)
  const q = `info_hash=${encodeBytes(INFO_HASH.toBuffer())}&peer_id=${encodeBytes(peerIdOf(2))}&port=7002&left=5&compact=0`
  const res = await raw(q)
  t.equal(res.status, 200)
  t.equal(res.type, 'text/plain')
  t.equal(res.body.interval, 10)
  t.equal(res.body['min interval'], 5)
  t.equal(res.body.complete, 1)
  t.equal(res.body.incomplete, 1)
  const peers = res.body.peers as Array<Record<string, unknown>>
  t.equal(peers.length, 1)
  t.equal(text(peers[0]?.ip), '127.0.0.1')
  t.equal(peers[0]?.port, 7001)
  t.equal(text(peers[0]?.['peer id']), peerIdOf(1).toString(), 'peer id as raw 20 bytes')
})

t.test('malformed announces get a bencoded failure reason; the tracker keeps serving', async (t) => {
  const { announce, raw, client } = await setup(t)
  const bad = await raw(
    `info_hash=${encodeBytes(Buffer.alloc(19))}&peer_id=${encodeBytes(peerIdOf(1))}&port=7001`,
  )
  t.equal(bad.status, 200, 'HTTP 200, as stock clients expect')
  t.match(text(bad.body['failure reason']), /info_hash must be exactly 20 bytes/)
  const noPort = await raw(
    `info_hash=${encodeBytes(INFO_HASH.toBuffer())}&peer_id=${encodeBytes(peerIdOf(1))}`,
  )
  t.match(text(noPort.body['failure reason']), /port is missing/)
  await t.rejects(
    client.announce({
      infoHash: INFO_HASH,
      peerId: peerIdOf(1),
      port: 0,
      uploaded: 0,
      downloaded: 0,
      left: 0,
    }),
    {
      code: 'UPSTREAM_REFUSED',
      message: /tracker refused the announce: port 0 is out of range/,
    },
  )
  const ok = await announce(1, 7001, 0)
  t.same(ok.peers, [], 'the next good announce works')
})

t.test('raw garbage over TCP does not kill the tracker', async (t) => {
  const { announce, tracker } = await setup(t)
  const { port } = new URL(tracker.url)
  for (const junk of [
    '\x00\x01\x02garbage\r\n\r\n',
    'GET /announce?info_hash=%ZZ HTTP/1.1\r\nHost: x\r\n\r\n',
    `GET /${'a'.repeat(20_000)} HTTP/1.1\r\n\r\n`,
    'BitTorrent protocol\r\n',
  ]) {
    const socket = connect(Number(port), '127.0.0.1')
    await once(socket, 'connect')
    socket.end(junk)
    socket.resume()
    await once(socket, 'close')
  }
  const half = connect(Number(port), '127.0.0.1')
  await once(half, 'connect')
  half.write('GET /announce?info_hash=') // a half request left hanging while others are served
  await announce(1, 7001, 0)
  const res = await announce(2, 7002, 10)
  t.same(
    res.peers.map((p) => p.port),
    [7001],
    'still serving',
  )
  half.destroy()
})

t.test('stopped removes a peer', async (t) => {
  const { announce } = await setup(t)
  await announce(1, 7001, 0)
  await announce(2, 7002, 10)
  t.same((await announce(3, 7003, 10)).peers.map((p) => p.port).sort(), [7001, 7002])
  const stopped = await announce(2, 7002, 10, { event: 'stopped' })
  t.same(stopped.peers, [], 'a stopping peer gets no peers')
  t.same(
    (await announce(3, 7003, 10)).peers.map((p) => p.port),
    [7001],
    'and is no longer handed out',
  )
})

t.test("bittorrent-tracker's stock Client announces and receives peers", async (t) => {
  const { announce, tracker } = await setup(t)
  await announce(1, 7001, 10)
  await announce(11, 7011, 0)
  await announce(99, ORIGIN_PEER_PORT, 0)
  // No type declarations ship with bittorrent-tracker; a computed specifier keeps tsc out of it.
  const spec: string = 'bittorrent-tracker/client'
  const { default: Client } = (await import(spec)) as {
    default: new (
      opts: Record<string, unknown>,
    ) => NodeJS.EventEmitter & { start(): void; destroy(cb?: () => void): void }
  }
  const client = new Client({
    infoHash: INFO_HASH.hex,
    peerId: randomBytes(20).toString('hex'),
    announce: [`${tracker.url}/announce`],
    port: 7777,
  })
  const peers: string[] = []
  const warnings: string[] = []
  client.on('peer', (addr: string) => peers.push(addr))
  client.on('warning', (err: Error) => warnings.push(err.message))
  client.on('error', (err: Error) => warnings.push(err.message))
  const update = once(client, 'update')
  client.start()
  const [data] = (await update) as [{ complete: number; incomplete: number }]
  t.teardown(() => new Promise<void>((r) => client.destroy(() => r())))
  await new Promise((r) => setImmediate(r))
  t.same(warnings, [], 'no warnings')
  t.equal(data.complete, 2)
  t.equal(data.incomplete, 2, 'the stock client counts as a leecher')
  t.equal(peers[0], `127.0.0.1:${ORIGIN_PEER_PORT}`, 'origin first')
  t.same(peers.slice(1), ['127.0.0.1:7011', '127.0.0.1:7001'], 'then the seeder, then the leecher')
  const mine = await announce(2, 7002, 10)
  t.ok(
    mine.peers.some((p) => p.port === 7777),
    'the stock client is in the swarm',
  )
})

t.test('metainfo from the origin, cached, coalesced; 404 and 503', async (t) => {
  const { client, origin, tracker } = await setup(t)
  const [a, b, c] = await Promise.all([0, 1, 2].map(() => client.metainfo('default', origin.digest)))
  t.same(a, origin.meta.raw, 'the origin’s .torrent, byte for byte')
  t.same(b, a)
  t.same(c, a)
  t.equal(origin.requests(), 1, 'concurrent requests shared one origin fetch')
  await client.metainfo('other-ns', origin.digest)
  t.equal(origin.requests(), 1, 'later requests come from the cache')
  t.equal(MetaInfo.parse(a as Buffer).infoHash.hex, origin.meta.infoHash.hex)

  const res = await fetch(
    `${tracker.url}/namespace/default/blobs/${encodeURIComponent(origin.digest.toString())}/metainfo`,
  )
  t.equal(res.status, 200)
  t.equal(res.headers.get('content-type'), 'application/x-bittorrent')
  await res.arrayBuffer()

  const unknown = Digest.fromHex('0'.repeat(64))
  await t.rejects(client.metainfo('default', unknown), { code: 'BLOB_NOT_FOUND', status: 404 })
  const bad = await fetch(`${tracker.url}/namespace/default/blobs/sha256:nothex/metainfo`)
  t.equal(bad.status, 400)
  t.match(await bad.json(), { code: 'INVALID_DIGEST' })
})

t.test('metainfo: unreachable origins give 503; a live one behind a dead one still serves', async (t) => {
  const dir = await tempDir(t)
  const origin = await fakeOrigin(t, dir)
  const dead = `127.0.0.1:${await deadPort()}`
  const down = await setup(t, { origins: [{ peer: `127.0.0.1:${ORIGIN_PEER_PORT}`, http: dead }] })
  await t.rejects(down.client.metainfo('default', origin.digest), {
    code: 'UNAVAILABLE',
    status: 503,
    message: /retry later/,
  })

  const none = await setup(t, { origins: [] })
  await t.rejects(none.client.metainfo('default', origin.digest), {
    code: 'UNAVAILABLE',
    message: /no origins are configured/,
  })

  // The dead origin first, and the live one cannot tell the owners: each is asked in turn.
  const mixed = await setup(t, {
    origins: [dead, origin.http].map((http) => ({ peer: `127.0.0.1:${ORIGIN_PEER_PORT}`, http })),
  })
  t.same(await mixed.client.metainfo('default', origin.digest), origin.meta.raw, 'served past the dead one')

  // The owners an origin names are asked first, whatever the configured order.
  const other = await fakeOrigin(t, await tempDir(t))
  const naming = await fakeOrigin(t, await tempDir(t), () => [other.http, naming.http])
  const named = await setup(t, {
    origins: [naming.http, other.http].map((http) => ({ peer: `127.0.0.1:${ORIGIN_PEER_PORT}`, http })),
  })
  t.same(await named.client.metainfo('default', naming.digest), naming.meta.raw)
  t.equal(other.requests(), 1, 'the owner named first was asked first (it does not hold the blob)')
  t.equal(naming.requests(), 1, 'then the next owner, which served it')

  // Every owner seeds: the owners after the one that served are asked too, in the background.
  const second = await fakeOrigin(t, await tempDir(t))
  const primary = await fakeOrigin(t, await tempDir(t), () => [primary.http, second.http])
  const both = await setup(t, {
    origins: [primary.http, second.http].map((http) => ({ peer: `127.0.0.1:${ORIGIN_PEER_PORT}`, http })),
  })
  t.same(await both.client.metainfo('default', primary.digest), primary.meta.raw)
  for (const deadline = Date.now() + 10_000; second.requests() === 0 && Date.now() < deadline; )
    await new Promise((r) => setTimeout(r, 20))
  t.equal(second.requests(), 1, 'the second owner was asked for the metainfo too, so it seeds the blob')
  t.equal(primary.requests(), 1)
})

t.test('start and stop are idempotent; announces after stop fail cleanly', async (t) => {
  const { tracker, client } = await setup(t)
  await tracker.start()
  const url = tracker.url
  await tracker.stop()
  await tracker.stop()
  t.throws(() => tracker.url, { code: 'UNAVAILABLE' })
  await t.rejects(
    new TrackerClient(url, { timeoutMs: 2000 }).announce({
      infoHash: INFO_HASH,
      peerId: peerIdOf(1),
      port: 7001,
      uploaded: 0,
      downloaded: 0,
      left: 0,
    }),
    { code: 'UNAVAILABLE' },
  )
  t.ok(client)
})
