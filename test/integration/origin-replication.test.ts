/**
 * Replication and self-healing (issue 9, fault 4), with three real origins on loopback sharing
 * one fs backend (behind FlakyBackend, which counts the puts that reach it):
 *
 * - a push through the proxy: every owner holds the blob byte-identical, written back once;
 * - an origin joining the ring receives the blobs it now owns, without any client asking;
 * - an origin leaving (stopped, past its fail threshold): its blobs are copied to the owners
 *   that replace it, so every blob keeps its replica count;
 * - hostile replicate requests are refused with a code, and the origin goes on serving.
 *
 * Every wait polls against a deadline.
 */
import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { FsBackend } from '../../lib/backend/index.js'
import { push } from '../../lib/cli/push.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest } from '../../lib/core/index.js'
import { ReservedListener } from '../../lib/lifecycle/index.js'
import { createLogger, silentLogger } from '../../lib/log/index.js'
import { OriginClient } from '../../lib/origin/client/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { OriginServer } from '../../lib/origin/server/index.js'
import { tempDir } from '../helpers/files.js'
import { FlakyBackend } from '../helpers/flaky-backend.js'
import { startPushFront } from '../helpers/herd.js'
import { metricValue, until, writtenBack } from '../helpers/writeback.js'

const logger = process.env.REPL_LOG
  ? createLogger({ level: 'debug', destination: process.env.REPL_LOG })
  : silentLogger()
const HOST = '127.0.0.1'
const HEALTH = { intervalMs: 100, timeoutMs: 300, failThreshold: 3, passThreshold: 2 }

/** Three origins' addresses reserved up front (each is in the others' static member list). */
async function startCluster(t: Test, opts: { replicas: number; start: number[] }) {
  const dir = await tempDir(t)
  const backend = new FlakyBackend(new FsBackend(join(dir, 'backend')))
  const listeners: ReservedListener[] = []
  for (let i = 0; i < 3; i++) {
    const l = new ReservedListener(`origin ${i}`, HOST, 0)
    await l.start()
    listeners.push(l)
  }
  const nodes = listeners.map((l) => `${HOST}:${l.port}`)
  // A listener an origin took is closed by that origin; one never taken is closed here.
  const taken = new Set<number>()
  t.teardown(async () => {
    for (let i = 0; i < 3; i++) if (!taken.has(i)) await listeners[i]?.stop()
  })
  const origins: (OriginServer | undefined)[] = [undefined, undefined, undefined]
  const start = async (i: number) => {
    const origin = new OriginServer(
      validateConfig(OriginConfigSchema, {
        log: { level: 'silent' },
        server: { host: HOST, port: 0 },
        dataDir: join(dir, `origin-${i}`),
        trackerUrl: 'http://tracker.test:15003',
        self: nodes[i],
        hashring: { nodes, replicas: opts.replicas, healthCheck: HEALTH },
        writeBack: { maxBackoffSeconds: 1 },
        replication: { attempts: 3, maxBackoffSeconds: 1 },
        repair: { settleSeconds: 0, blobsPerSecond: 1000, retrySeconds: 1 },
      }),
      { logger, backend, tagLookup: { tagsOf: async () => [] }, listener: listeners[i]?.server },
    )
    taken.add(i)
    await origin.start()
    t.teardown(() => origin.stop())
    origins[i] = origin
    return origin
  }
  for (const i of opts.start) await start(i)
  const live = () => origins.filter((o): o is OriginServer => o !== undefined)
  /** Every blob the test pushed: its owners (as origin `via` names them) hold it in their caches. */
  const ownersHold = async (digests: Digest[], via = 0) => {
    for (const d of digests) {
      const owners = await new OriginClient(nodes[via] as string).locations(d)
      for (const o of owners) {
        const origin = live().find((x) => x.self === o)
        if (!origin || !(await origin.store.stat(d))) return false
      }
    }
    return true
  }
  /** Origins `by` find `member` healthy (or not). */
  const sees = async (member: string, healthy: boolean, by: number[]) => {
    for (const i of by) {
      const v = await metricValue(origins[i]!.registry, 'shoal_origin_member_healthy', { member })
      if (v !== (healthy ? 1 : 0)) return false
    }
    return true
  }
  return { dir, backend, nodes, origins, start, live, ownersHold, sees }
}

/** Deterministic blobs (fixed bytes, so the test's placement is the same on every run). */
function blobs(n: number, size = 100_000): { data: Buffer; digest: Digest }[] {
  return Array.from({ length: n }, (_, i) => {
    const data = Buffer.alloc(size + i, (i * 7 + 1) & 0xff)
    data.write(`replication test blob ${i}`)
    return { data, digest: Digest.fromBuffer(data) }
  })
}

/** Uploads the blob to its primary owner, as the proxy does. */
async function upload(via: string, b: { data: Buffer; digest: Digest }): Promise<string> {
  const [owner] = await new OriginClient(via).locations(b.digest)
  const client = new OriginClient(owner as string)
  await client.upload('default', b.digest, Readable.from([b.data]), b.data.length, { chunkSize: 64_000 })
  return owner as string
}

const sumMetric = async (origins: OriginServer[], name: string, labels: Record<string, string> = {}) => {
  let sum = 0
  for (const o of origins) sum += await metricValue(o.registry, name, labels)
  return sum
}

t.test('a push reaches every owner byte-identical and is written back once', async (t) => {
  const c = await startCluster(t, { replicas: 3, start: [0, 1, 2] })
  const { proxy } = await startPushFront(t, c.nodes)
  const path = join(c.dir, 'file.bin')
  const bytes = Buffer.alloc(3 << 20)
  for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE((i * 2654435761) >>> 0, i)
  await writeFile(path, bytes)
  const pushed = await push({ srcPath: path, srcHost: 'h1', dstHost: proxy.url, version: 'v1' })
  t.ok(pushed.uploaded, 'pushed through the proxy')
  t.same((await new OriginClient(c.nodes[0] as string).locations(pushed.digest)).length, 3, 'three owners')

  await until('every owner holds the blob', () => c.ownersHold([pushed.digest]))
  const want = createHash('sha256').update(bytes).digest('hex')
  for (const o of c.live()) {
    const held = await readFile(o.store.blobPath(pushed.digest))
    t.equal(createHash('sha256').update(held).digest('hex'), want, `${o.self} holds identical bytes`)
  }
  for (const o of c.live()) await writtenBack(o.registry)
  t.equal(c.backend.puts, 1, 'the backend got exactly one write')
  await until('the committing origin counted two copies', async () => {
    const n = await sumMetric(c.live(), 'shoal_origin_replications_total', {
      trigger: 'commit',
      result: 'copied',
    })
    return n === 2
  })
  t.equal(
    await sumMetric(c.live(), 'shoal_origin_peer_fetches_total', { result: 'ok' }),
    2,
    'copied from the peer',
  )
  t.equal(
    await sumMetric(c.live(), 'shoal_origin_backend_fetches_total', { result: 'ok' }),
    0,
    'no replica came from the backend',
  )
})

t.test('fault 4: an origin joining the ring receives the blobs it now owns', async (t) => {
  const c = await startCluster(t, { replicas: 2, start: [0, 1] })
  const late = c.nodes[2] as string
  const set = blobs(12)
  // Until origins 0 and 1 find the third one down it is named, and replicas sent to it fail.
  await until('the unstarted origin is passed over', () => c.sees(late, false, [0, 1]))
  for (const b of set) await upload(c.nodes[0] as string, b)
  const digests = set.map((b) => b.digest)
  await until('both live origins hold every blob', () => c.ownersHold(digests))

  const joined = await c.start(2)
  await until('the joined origin is healthy again', () => c.sees(late, true, [0, 1]))
  // Nobody asks the new origin for anything: repair on 0 and 1 copies what it owns now.
  await until('every owner (the joined one included) holds every blob', () => c.ownersHold(digests), 30_000)
  let owned = 0
  for (const d of digests) {
    if ((await new OriginClient(late).locations(d)).includes(late)) {
      owned++
      t.ok(await joined.store.stat(d), `the joined origin holds ${d.hex.slice(0, 8)}, which it owns`)
    }
  }
  t.ok(owned > 0, `the joined origin owns ${owned} of ${digests.length} blobs`)
  t.ok((await sumMetric(c.live(), 'shoal_origin_repair_copied_total')) >= owned, 'repair counted its copies')
  t.ok(
    (await sumMetric(c.live(), 'shoal_origin_repair_checked_total')) >= digests.length,
    'repair checked blobs',
  )
  for (const o of c.live()) await writtenBack(o.registry)
  t.equal(c.backend.puts, digests.length, 'each blob written back once, replicas not')
})

t.test('fault 4: an origin leaving the ring: its blobs are re-replicated', async (t) => {
  const c = await startCluster(t, { replicas: 2, start: [0, 1, 2] })
  const set = blobs(12, 50_000)
  for (const b of set) await upload(c.nodes[0] as string, b)
  const digests = set.map((b) => b.digest)
  await until('every owner holds every blob', () => c.ownersHold(digests))
  const leaving = c.nodes[1] as string
  const held: Digest[] = []
  for (const d of digests) if (await c.origins[1]?.store.stat(d)) held.push(d)
  t.ok(held.length > 0, `the leaving origin held ${held.length} blobs`)
  const copiedBefore = await sumMetric([c.origins[0]!, c.origins[2]!], 'shoal_origin_repair_copied_total')

  await c.origins[1]?.stop()
  c.origins[1] = undefined
  await until('the stopped origin is passed over', () => c.sees(leaving, false, [0, 2]))
  await until(
    'the new owners hold every blob',
    async () => (await c.ownersHold(digests, 0)) && (await c.ownersHold(digests, 2)),
    30_000,
  )
  for (const d of digests) {
    let copies = 0
    for (const o of c.live()) if (await o.store.stat(d)) copies++
    t.equal(copies, 2, `${d.hex.slice(0, 8)} is held by 2 live origins`)
  }
  // The owners hold the copies a moment before their senders count them.
  const copied = async () => (await sumMetric(c.live(), 'shoal_origin_repair_copied_total')) - copiedBefore
  await until(
    'repair counted a copy of each blob the leaving origin held',
    async () => (await copied()) >= held.length,
  )
  await until(
    'no repair pending',
    async () => (await sumMetric(c.live(), 'shoal_origin_repair_pending')) === 0,
  )
  t.equal(await copied(), held.length, 'repair copied each blob the leaving origin held, once')
})

t.test('hostile replicate requests are refused; the origin goes on serving', async (t) => {
  const c = await startCluster(t, { replicas: 1, start: [0, 1, 2] })
  const target = c.nodes[0] as string
  const other = c.nodes[1] as string
  const post = (digest: string, body: string | Buffer) =>
    fetch(`http://${target}/blobs/${digest}/replicate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    })
  const owned: Digest[] = []
  const foreign: Digest[] = []
  for (const b of blobs(20, 10)) {
    const [owner] = await new OriginClient(target).locations(b.digest)
    ;(owner === target ? owned : foreign).push(b.digest)
  }
  t.ok(owned.length > 0 && foreign.length > 0)
  const d = owned[0]!.toString()
  const answer = async (res: Response) => ({
    status: res.status,
    code: ((await res.json()) as { code?: string }).code,
  })

  t.same(await answer(await post(d, '{"namespace":"default","from":"10.9.9.9:1"}')), {
    status: 403,
    code: 'NOT_RING_MEMBER',
  })
  t.same(
    await answer(await post(d, `{"namespace":"default","from":"${target}"}`)),
    { status: 400, code: 'BAD_REQUEST' },
    'not from itself',
  )
  t.same(await answer(await post(foreign[0]!.toString(), `{"namespace":"default","from":"${other}"}`)), {
    status: 409,
    code: 'NOT_OWNER',
  })
  t.same(await answer(await post(d, 'garbage{')), { status: 400, code: 'BAD_REQUEST' }, 'not JSON')
  t.same(
    await answer(await post(d, '{"namespace":"default","from":"x","extra":1}')),
    { status: 400, code: 'BAD_REQUEST' },
    'unknown key',
  )
  t.same(
    await answer(await post(d, '{"namespace":"../etc","from":"' + other + '"}')),
    { status: 400, code: 'BAD_REQUEST' },
    'bad namespace',
  )
  t.same(await answer(await post('sha256:nothex', '{}')), { status: 400, code: 'INVALID_DIGEST' })
  t.equal((await post(d, Buffer.alloc(1 << 20, 0x20))).status, 413, 'a body over the limit')
  // A blob its source does not have either: the owner tries the peer, then the backend, and fails.
  const res = await post(d, `{"namespace":"default","from":"${other}"}`)
  t.equal(res.status, 202, 'accepted: fetching')
  await until('the failed copy is reported', async () => {
    const r = await fetch(`http://${target}/namespace/default/blobs/${d}`, { method: 'HEAD' })
    return r.status === 502 || r.status === 404
  })
  t.equal((await fetch(`http://${target}/health`)).status, 200, 'still serving')
  const b = blobs(1, 5000)[0]!
  const owner = await upload(target, b)
  t.ok(await new OriginClient(owner).stat('default', b.digest), 'still takes pushes')
})

t.test(
  'fault 4 with DNS members: an origin added to the answer gets its blobs; one removed has its blobs re-placed',
  async (t) => {
    const dir = await tempDir(t)
    const backend = new FlakyBackend(new FsBackend(join(dir, 'backend')))
    // One port on three loopback addresses: DNS members share the port (hashring.dns.port).
    const first = new ReservedListener('origin 1', '127.0.0.1', 0)
    await first.start()
    const port = first.port
    const listeners = [first]
    for (const host of ['127.0.0.2', '127.0.0.3']) {
      const l = new ReservedListener(`origin ${host}`, host, port)
      await l.start()
      listeners.push(l)
    }
    const addr = ['127.0.0.1', '127.0.0.2', '127.0.0.3'].map((h) => `${h}:${port}`)
    let answer = ['127.0.0.1', '127.0.0.2']
    const taken = new Set<number>()
    t.teardown(async () => {
      for (let i = 0; i < 3; i++) if (!taken.has(i)) await listeners[i]?.stop()
    })
    const origins: (OriginServer | undefined)[] = []
    const start = async (i: number) => {
      const origin = new OriginServer(
        validateConfig(OriginConfigSchema, {
          log: { level: 'silent' },
          server: { host: addr[i]?.split(':')[0], port },
          dataDir: join(dir, `origin-${i}`),
          trackerUrl: 'http://tracker.test:15003',
          self: addr[i],
          hashring: {
            dns: { name: 'origins.test', port, refreshSeconds: 1 },
            replicas: 2,
            healthCheck: HEALTH,
          },
          replication: { attempts: 3, maxBackoffSeconds: 1 },
          repair: { settleSeconds: 0, blobsPerSecond: 1000, retrySeconds: 1 },
        }),
        {
          logger,
          backend,
          tagLookup: { tagsOf: async () => [] },
          listener: listeners[i]?.server,
          resolve: async () => [...answer],
        },
      )
      taken.add(i)
      await origin.start()
      t.teardown(() => origin.stop())
      origins[i] = origin
      return origin
    }
    await start(0)
    await start(1)
    const set = blobs(12, 20_000)
    for (const b of set) await upload(addr[0] as string, b)
    const digests = set.map((b) => b.digest)
    /** Each blob is held by every owner origin `via` names; returns how many of them `member` owns. */
    const placed = async (via: number, member: string) => {
      let owned = 0
      for (const d of digests) {
        const owners = await new OriginClient(addr[via] as string).locations(d)
        if (owners.includes(member)) owned++
        for (const o of owners) {
          const origin = origins[addr.indexOf(o)]
          if (!origin || !(await origin.store.stat(d))) return -1
        }
      }
      return owned
    }
    await until(
      'both members hold every blob',
      async () => (await placed(0, addr[0] as string)) === digests.length,
    )

    // Added: the name now answers a third address, whose origin no client asks for anything.
    answer = ['127.0.0.1', '127.0.0.2', '127.0.0.3']
    await start(2)
    await until(
      'the ring has three members',
      async () =>
        (await new OriginClient(addr[0] as string).locations(digests[0]!)).length === 2 &&
        (await metricValue(origins[0]!.registry, 'shoal_origin_member_healthy', {
          member: addr[2] as string,
        })) === 1,
    )
    let owned = -1
    await until(
      'the added origin holds the blobs it owns',
      async () => {
        owned = await placed(0, addr[2] as string)
        return owned >= 0 && (await placed(1, addr[2] as string)) >= 0
      },
      30_000,
    )
    t.ok(owned > 0, `the added origin owns and holds ${owned} of ${digests.length} blobs`)

    // Removed: the name stops answering the second address (its origin keeps running).
    answer = ['127.0.0.1', '127.0.0.3']
    await until(
      'every blob is on both remaining members',
      async () => {
        for (const d of digests) {
          if (!(await origins[0]!.store.stat(d)) || !(await origins[2]!.store.stat(d))) return false
        }
        return true
      },
      30_000,
    )
    t.pass('the replica count is kept after a member is removed from the DNS answer')
    t.equal(backend.puts, digests.length, 'each blob written back once')
  },
)
