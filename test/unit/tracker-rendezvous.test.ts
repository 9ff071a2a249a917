/**
 * The tracker choice per infohash: rendezvous (highest-random-weight) order, and TrackerSet's
 * failover, against small HTTP servers on loopback that play a tracker up, down or refusing.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { bencodeEncode } from '../../lib/core/bencode.js'
import { Digest, InfoHash } from '../../lib/core/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { Registry } from '../../lib/metrics/index.js'
import type { AnnounceRequest } from '../../lib/torrent/index.js'
import { isTrackerFault, rendezvousOrder, TrackerClient, TrackerSet } from '../../lib/tracker/client/index.js'

const key = (i: number) => createHash('sha1').update(`infohash ${i}`).digest()
const self = (s: string) => s
const firstChoice = (nodes: string[], k: Uint8Array) => rendezvousOrder(nodes, k, self)[0]

t.test('rendezvous order: stable, independent of the listed order, a permutation', async (t) => {
  const nodes = ['10.0.0.1:15003', '10.0.0.2:15003', '10.0.0.3:15003', '10.0.0.4:15003']
  const problems: string[] = []
  for (let i = 0; i < 200; i++) {
    const order = rendezvousOrder(nodes, key(i), self)
    if (rendezvousOrder(nodes, key(i), self).join() !== order.join()) problems.push(`${i}: unstable`)
    if (rendezvousOrder([...nodes].reverse(), key(i), self).join() !== order.join())
      problems.push(`${i}: depends on the listed order`)
    if ([...order].sort().join() !== [...nodes].sort().join()) problems.push(`${i}: not a permutation`)
  }
  t.same(problems, [], 'the same order every time, whatever order the nodes are listed in')
})

t.test('rendezvous order spreads infohashes evenly over the trackers', async (t) => {
  const nodes = ['tracker-a:15003', 'tracker-b:15003', 'tracker-c:15003']
  const keys = 3000
  const counts = new Map<string, number>()
  for (let i = 0; i < keys; i++) {
    const first = firstChoice(nodes, key(i)) as string
    counts.set(first, (counts.get(first) ?? 0) + 1)
  }
  for (const n of nodes) {
    const c = counts.get(n) ?? 0
    t.ok(c > 850 && c < 1150, `${n} is first for ${c} of ${keys} infohashes (1000 expected)`)
  }
})

t.test('adding or removing a tracker moves only the infohashes it gains or loses', async (t) => {
  const three = ['tracker-a:15003', 'tracker-b:15003', 'tracker-c:15003']
  const four = [...three, 'tracker-d:15003']
  const keys = 2000
  let moved = 0
  const problems: string[] = []
  for (let i = 0; i < keys; i++) {
    const before = firstChoice(three, key(i))
    const after = firstChoice(four, key(i))
    if (before !== after) {
      moved++
      if (after !== 'tracker-d:15003') problems.push(`${i} moved from ${before} to ${after}`)
    }
    // Removing one keeps the relative order of the others for every key.
    const without = rendezvousOrder(three, key(i), self).filter((n) => n !== 'tracker-b:15003')
    if (rendezvousOrder(['tracker-a:15003', 'tracker-c:15003'], key(i), self).join() !== without.join())
      problems.push(`${i}: removing tracker-b reordered the others`)
  }
  t.same(problems, [], 'keys only move to an added tracker, or away from a removed one')
  t.ok(moved > keys * 0.18 && moved < keys * 0.32, `${moved} of ${keys} moved, about a quarter expected`)
})

type Mode = 'ok' | 'refuse' | 'garbage' | 'error' | 'reset' | 'hang' | 'not-found'

interface FakeTracker {
  url: string
  mode: Mode
  hits: number
  /** the peer port this tracker hands out, so a test can tell who answered */
  peerPort: number
}

/** A tracker stand-in whose behaviour the test switches with `mode`. */
async function fakeTracker(t: Test, peerPort: number): Promise<FakeTracker> {
  const state: FakeTracker = { url: '', mode: 'ok', hits: 0, peerPort }
  const server: Server = createServer((req, res) => {
    state.hits++
    const announce = req.url?.startsWith('/announce') ?? false
    switch (state.mode) {
      case 'ok': {
        if (!announce) {
          res.end(`metainfo from ${peerPort}`)
          return
        }
        const peer = Buffer.from([127, 0, 0, 1, peerPort >> 8, peerPort & 0xff])
        res.end(bencodeEncode({ interval: 30, peers: peer }))
        return
      }
      case 'refuse':
        res.end(bencodeEncode({ 'failure reason': 'unregistered torrent' }))
        return
      case 'garbage':
        res.end('<html>this is not a tracker</html>')
        return
      case 'error':
        res.writeHead(500).end('oops')
        return
      case 'reset':
        req.socket.destroy()
        return
      case 'hang':
        return
      case 'not-found':
        res.writeHead(404, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ code: 'BLOB_NOT_FOUND', message: 'blob is not known to any origin' }))
        return
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  )
  return state
}

function announceFor(infoHash: InfoHash, signal?: AbortSignal): AnnounceRequest {
  const req: AnnounceRequest = {
    infoHash,
    peerId: Buffer.from('-SA0001-abcdefghijkl'),
    port: 6881,
    uploaded: 0,
    downloaded: 0,
    left: 100,
  }
  if (signal) req.signal = signal
  return req
}

/** Two fake trackers in a set, and an infohash whose first choice is `primary`. */
async function pair(t: Test, opts: { now?: () => number; timeoutMs?: number } = {}) {
  const a = await fakeTracker(t, 1001)
  const b = await fakeTracker(t, 1002)
  const registry = new Registry()
  const set = new TrackerSet([a.url, b.url], {
    logger: silentLogger(),
    registry,
    retryMs: 1000,
    maxRetryMs: 4000,
    timeoutMs: opts.timeoutMs ?? 2000,
    ...(opts.now ? { now: opts.now } : {}),
  })
  const infoHash = InfoHash.fromBytes(randomBytes(20))
  const [first] = set.order(infoHash.toBuffer())
  const [primary, secondary] = first === a.url ? [a, b] : [b, a]
  return { set, infoHash, primary, secondary, registry }
}

const answeredBy = async (p: Promise<{ peers: Array<{ port: number }> }>) => (await p).peers[0]?.port

t.test('failover: the first tracker down, the second answers; back to the first after a while', async (t) => {
  let now = 1_000_000
  const { set, infoHash, primary, secondary, registry } = await pair(t, { now: () => now })
  t.equal(
    await answeredBy(set.announce(announceFor(infoHash))),
    primary.peerPort,
    'healthy: the first choice',
  )

  for (const mode of ['reset', 'error', 'garbage'] as const) {
    primary.mode = mode
    now += 60_000 // past any pause: the first choice is tried first again
    const hits = primary.hits
    t.equal(
      await answeredBy(set.announce(announceFor(infoHash))),
      secondary.peerPort,
      `first choice ${mode === 'reset' ? 'drops the connection' : mode === 'error' ? 'answers 500' : 'answers garbage'}: the second answers`,
    )
    t.equal(primary.hits, hits + 1, 'the first choice was tried once')
  }
  t.match(
    set.health().find((h) => h.url === primary.url),
    { up: false, failures: 3 },
  )

  // While it is passed over, it is not asked at all.
  const hits = primary.hits
  now += 500
  t.equal(await answeredBy(set.announce(announceFor(infoHash))), secondary.peerPort)
  t.equal(primary.hits, hits, 'a tracker in its pause is not asked while another answers')

  primary.mode = 'ok'
  now += 4000 // past the longest pause (maxRetryMs)
  t.equal(
    await answeredBy(set.announce(announceFor(infoHash))),
    primary.peerPort,
    'after the pause the first choice is asked first again, and used',
  )
  t.match(
    set.health().find((h) => h.url === primary.url),
    { up: true, failures: 0 },
  )
  const metrics = await registry.metrics()
  t.match(metrics, new RegExp(`shoal_tracker_client_failovers_total\\{tracker="${primary.url}"\\} 3`))
  t.match(metrics, new RegExp(`shoal_tracker_client_up\\{tracker="${primary.url}"\\} 1`))
})

t.test('a failure reason is an answer, not a failure: no failover', async (t) => {
  const { set, infoHash, primary, secondary } = await pair(t)
  primary.mode = 'refuse'
  await t.rejects(set.announce(announceFor(infoHash)), {
    code: 'UPSTREAM_REFUSED',
    details: { reason: 'unregistered torrent' },
  })
  t.equal(secondary.hits, 0, 'the second tracker was not asked')
  t.match(
    set.health().find((h) => h.url === primary.url),
    { up: true },
  )
})

t.test('a tracker that does not answer in time is failed over', async (t) => {
  const { set, infoHash, primary, secondary } = await pair(t, { timeoutMs: 300 })
  primary.mode = 'hang'
  t.equal(await answeredBy(set.announce(announceFor(infoHash))), secondary.peerPort)
  t.match(
    set.health().find((h) => h.url === primary.url),
    { up: false, lastError: /did not answer within/ },
  )
})

t.test('every tracker down: UNAVAILABLE naming each; an aborted request is not a failure', async (t) => {
  const { set, infoHash, primary, secondary } = await pair(t)
  primary.mode = 'error'
  secondary.mode = 'reset'
  await t.rejects(set.announce(announceFor(infoHash)), {
    code: 'UNAVAILABLE',
    message: new RegExp(`no tracker answered the announce \\(${primary.url}: .*; ${secondary.url}: .*\\)`),
  })
  secondary.mode = 'ok'
  t.equal(
    await answeredBy(set.announce(announceFor(infoHash))),
    secondary.peerPort,
    'with every tracker in its pause, they are still tried, in order',
  )

  const { set: fresh, infoHash: ih, primary: p1, secondary: s1 } = await pair(t)
  p1.mode = 'hang'
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 100)
  await t.rejects(fresh.announce(announceFor(ih, ac.signal)), { code: 'ABORTED' })
  t.equal(s1.hits, 0, 'an abort does not move on to the next tracker')
  t.match(
    fresh.health().find((h) => h.url === p1.url),
    { up: true },
    'nor count against the tracker',
  )
})

t.test('metainfo: by digest, failing over only when a tracker does not answer', async (t) => {
  const a = await fakeTracker(t, 2001)
  const b = await fakeTracker(t, 2002)
  const set = new TrackerSet([a.url, b.url], { logger: silentLogger(), retryMs: 1000 })
  const digest = Digest.fromBuffer(randomBytes(32))
  const [first] = set.order(Buffer.from(digest.hex, 'hex'))
  const [primary, secondary] = first === a.url ? [a, b] : [b, a]

  primary.mode = 'not-found'
  await t.rejects(set.metainfo('default', digest), { code: 'BLOB_NOT_FOUND' })
  t.equal(secondary.hits, 0, "a tracker's not-found is believed")

  primary.mode = 'reset'
  const raw = await set.metainfo('default', digest)
  t.equal(raw.toString(), `metainfo from ${secondary.peerPort}`, 'an unreachable tracker is failed over')
})

t.test('TrackerClient tells faults from answers', async (t) => {
  const closed = new TrackerClient('127.0.0.1:1', { timeoutMs: 2000 })
  const err = await closed.announce(announceFor(InfoHash.fromBytes(randomBytes(20)))).catch((e: unknown) => e)
  t.match(err, { code: 'UNAVAILABLE' }, 'connection refused keeps its code')
  t.ok(isTrackerFault(err), 'and is a fault')

  const tracker = await fakeTracker(t, 3001)
  const client = new TrackerClient(tracker.url, { timeoutMs: 2000 })
  tracker.mode = 'refuse'
  const refused = await client
    .announce(announceFor(InfoHash.fromBytes(randomBytes(20))))
    .catch((e: unknown) => e)
  t.notOk(isTrackerFault(refused), 'a failure reason is not a fault')
  tracker.mode = 'not-found'
  const missing = await client.metainfo('default', Digest.fromBuffer(randomBytes(8))).catch((e: unknown) => e)
  t.match(missing, { code: 'BLOB_NOT_FOUND', message: 'blob is not known to any origin' })
  t.notOk(isTrackerFault(missing), "a coded answer to a metainfo request is the tracker's answer")
  const announced = await client
    .announce(announceFor(InfoHash.fromBytes(randomBytes(20))))
    .catch((e: unknown) => e)
  t.ok(isTrackerFault(announced), 'but any non-2xx answer to an announce is a fault')
})

t.test('a set needs a tracker; duplicates count once', async (t) => {
  t.throws(() => new TrackerSet([]), { code: 'CONFIG_INVALID' })
  const set = new TrackerSet(['127.0.0.1:15003', 'http://127.0.0.1:15003', '127.0.0.1:15004'])
  t.same(
    set
      .health()
      .map((h) => h.url)
      .sort(),
    ['http://127.0.0.1:15003', 'http://127.0.0.1:15004'],
  )
})
