/**
 * Replication between two clusters in one test run: two real herds (proxy, origin, tracker,
 * build-index each, fs backends), cluster A replicating tags matching ^repl- to cluster B.
 * B is reached through a switchable TCP forwarder, so "B down for a while" is real refused
 * connections, and the queue must catch up once it is back.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { BuildIndexClient } from '../../lib/build-index/client/index.js'
import { push } from '../../lib/cli/push.js'
import { validateConfig } from '../../lib/config/index.js'
import { HerdConfigSchema } from '../../lib/herd/config.js'
import { startHerd } from '../../lib/herd/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { OriginClient } from '../../lib/origin/client/index.js'
import { randomFile, tempDir } from '../helpers/files.js'
import { until as untilIn } from '../helpers/until.js'

/** As test/helpers/until.ts, with 30 s: replication retries back off for seconds. */
const until = <T>(what: string, get: () => Promise<T | undefined | false>) => untilIn(what, get, 30_000)

const logger = silentLogger()

/** Forwards TCP to `target` while up; while down, every new connection is reset at once. */
async function forwarder(t: Test, target: string) {
  const [host, port] = [target.split(':')[0] as string, Number(target.split(':')[1])]
  let up = true
  const open = new Set<Socket>()
  const server: Server = createServer((client) => {
    if (!up) {
      client.resetAndDestroy()
      return
    }
    const upstream = connect(port, host)
    open.add(client).add(upstream)
    const close = () => {
      client.destroy()
      upstream.destroy()
      open.delete(client)
      open.delete(upstream)
    }
    client.on('error', close).on('close', close)
    upstream.on('error', close).on('close', close)
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const addr = server.address() as { port: number }
  t.teardown(() => {
    for (const s of open) s.destroy()
    return new Promise<void>((r) => server.close(() => r()))
  })
  return {
    address: `127.0.0.1:${addr.port}`,
    setUp(value: boolean) {
      up = value
      if (!value) for (const s of open) s.destroy()
    },
  }
}

const hostPort = (url: string) => url.replace(/^http:\/\//, '')

async function herd(t: Test, dir: string, buildIndex: Record<string, unknown> = {}) {
  const h = await startHerd(
    validateConfig(HerdConfigSchema, {
      dataDir: dir,
      bindHost: '127.0.0.1',
      basePort: 0,
      log: { level: 'silent' },
      buildIndex,
    }),
    { logger },
  )
  t.teardown(() => h.stop())
  return h
}

t.test(
  'a matching tag reaches the remote with its blob; the remote down a while, then caught up',
  async (t) => {
    const dir = await tempDir(t)
    const b = await herd(t, join(dir, 'b'))
    const toIndex = await forwarder(t, hostPort(b.urls.buildIndex))
    const toOrigin = await forwarder(t, hostPort(b.urls.origin))
    const a = await herd(t, join(dir, 'a'), {
      remotes: [{ name: 'dc2', buildIndex: toIndex.address, origins: [toOrigin.address], tags: ['^repl-'] }],
      replication: { maxBackoffMs: 200 },
    })
    const aIndex = new BuildIndexClient(a.urls.buildIndex)
    const bIndex = new BuildIndexClient(b.urls.buildIndex)
    const bOrigin = new OriginClient(b.urls.origin)
    await randomFile(join(dir, 'one.bin'), 3 << 20)

    // 1. Up: replicated, blob first.
    const one = await push({ srcPath: join(dir, 'one.bin'), srcHost: 'repl', dstHost: a.urls.proxy })
    const got = await until('the tag on B', async () => (await bIndex.hasTag(one.tag)) || undefined)
    t.ok(got)
    t.equal((await bIndex.getTag(one.tag)).toString(), one.digest.toString())
    t.equal((await bOrigin.stat('default', one.digest))?.size, 3 << 20, "B's origin holds the blob")
    const history = await bIndex.history(one.tag)
    t.equal(history.entries[0]?.actor, 'replication', "B's history says who put it")

    // 2. A tag that matches no regex stays home.
    await randomFile(join(dir, 'local.bin'), 1 << 20)
    const local = await push({ srcPath: join(dir, 'local.bin'), srcHost: 'local', dstHost: a.urls.proxy })

    // 3. B down: pushes queue up, the status shows lag and the error.
    toIndex.setUp(false)
    toOrigin.setUp(false)
    await randomFile(join(dir, 'two.bin'), 2 << 20)
    await randomFile(join(dir, 'three.bin'), 1 << 20)
    const first = await push({ srcPath: join(dir, 'two.bin'), srcHost: 'repl', dstHost: a.urls.proxy })
    // latest moved while queued: one item per tag, the remote gets the newest digest.
    await randomFile(join(dir, 'two.bin'), 2 << 20)
    const two = await push({ srcPath: join(dir, 'two.bin'), srcHost: 'repl', dstHost: a.urls.proxy })
    t.not(two.digest.toString(), first.digest.toString())
    // Deleted here while queued: superseded, never sent.
    await randomFile(join(dir, 'gone.bin'), 1 << 20)
    const gone = await push({ srcPath: join(dir, 'gone.bin'), srcHost: 'repl', dstHost: a.urls.proxy })
    await aIndex.deleteTag(gone.tag)
    const three = await push({
      srcPath: join(dir, 'three.bin'),
      srcHost: 'repl',
      dstHost: a.urls.proxy,
      version: 'v1',
    })
    const status = await until('an error in the status', async () => {
      const s = await aIndex.http.json<{ remotes: { name: string; queued: number; lastError?: unknown }[] }>(
        'GET',
        '/replication',
      )
      return s.remotes[0]?.lastError && s.remotes[0].queued === 2 ? s.remotes[0] : undefined
    })
    t.equal(status.name, 'dc2')
    t.equal(status.queued, 2)
    t.notOk(await bIndex.hasTag(two.tag), 'nothing reached B while it was down')

    // 4. A restarted meanwhile: the queue is in the backend, not in memory.
    await a.stop()
    const a2 = await herd(t, join(dir, 'a'), {
      remotes: [{ name: 'dc2', buildIndex: toIndex.address, origins: [toOrigin.address], tags: ['^repl-'] }],
      replication: { maxBackoffMs: 200 },
    })
    const a2Index = new BuildIndexClient(a2.urls.buildIndex)
    const reloaded = await a2Index.http.json<{ remotes: { queued: number }[] }>('GET', '/replication')
    t.equal(reloaded.remotes[0]?.queued, 2, 'the queue survived the restart')

    // 5. B back: catches up.
    toIndex.setUp(true)
    toOrigin.setUp(true)
    await until('B caught up', async () => {
      const s = await a2Index.http.json<{ remotes: { queued: number }[] }>('GET', '/replication')
      return s.remotes[0]?.queued === 0 ? true : undefined
    })
    t.equal((await bIndex.getTag(two.tag)).toString(), two.digest.toString())
    t.equal((await bIndex.getTag(three.tag)).toString(), three.digest.toString())
    t.equal((await bOrigin.stat('default', three.digest))?.size, 1 << 20)
    t.notOk(await bIndex.hasTag(local.tag), 'the unmatched tag never went')
    t.notOk(await bIndex.hasTag(gone.tag), 'the tag deleted while queued never went')
    t.same(
      (await bIndex.history(two.tag)).entries.map((e) => e.to),
      [two.digest.toString()],
      'B saw only the newest digest of the moved tag',
    )
    const text = await (await fetch(`${a2.urls.buildIndex}/metrics`)).text()
    t.match(text, /shoal_build_index_replication_queued\{[^}]*remote="dc2"[^}]*\} 0/)
    t.match(text, /shoal_build_index_replication_attempts_total\{[^}]*result="replicated"[^}]*\} 2/)
  },
)

t.test('a remote that hangs delays only its own queue, not the other remotes', async (t) => {
  const dir = await tempDir(t)
  const b = await herd(t, join(dir, 'b'))
  // Accepts connections and never answers: every request to it waits for its client timeout.
  const held = new Set<Socket>()
  const stuck = createServer((s) => {
    held.add(s)
    s.on('error', () => {}).on('close', () => held.delete(s))
  })
  await new Promise<void>((r) => stuck.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    for (const s of held) s.destroy()
    return new Promise<void>((r) => stuck.close(() => r()))
  })
  const stuckAddr = `127.0.0.1:${(stuck.address() as { port: number }).port}`
  const a = await herd(t, join(dir, 'a'), {
    remotes: [
      { name: 'stuck', buildIndex: stuckAddr, origins: [stuckAddr], tags: ['^repl-'] },
      {
        name: 'dc2',
        buildIndex: hostPort(b.urls.buildIndex),
        origins: [hostPort(b.urls.origin)],
        tags: ['^repl-'],
      },
    ],
  })
  const aIndex = new BuildIndexClient(a.urls.buildIndex)
  const bIndex = new BuildIndexClient(b.urls.buildIndex)
  await randomFile(join(dir, 'one.bin'), 1 << 20)
  const one = await push({ srcPath: join(dir, 'one.bin'), srcHost: 'repl', dstHost: a.urls.proxy })
  await until('the tag on B', async () => (await bIndex.hasTag(one.tag)) || undefined)
  type Status = { remotes: { name: string; queued: number; lastError?: unknown }[] }
  // B holds the tag a moment before A takes the item off dc2's queue: wait for that too.
  const status = await until('dc2 drained on A', async () => {
    const st = await aIndex.http.json<Status>('GET', '/replication')
    return st.remotes.find((r) => r.name === 'dc2')?.queued === 0 ? st : undefined
  })
  const s = status.remotes.find((r) => r.name === 'stuck')
  t.equal(s?.queued, 1, 'the hanging remote still holds its item')
  t.notOk(s?.lastError, "B was served while the hanging remote's first attempt was still waiting")
  t.equal(status.remotes.find((r) => r.name === 'dc2')?.queued, 0, 'dc2 drained')
})

t.test('config: remotes are strict; a bad regex or name is refused at start-up', async (t) => {
  const { BuildIndexConfigSchema } = await import('../../lib/build-index/config.js')
  const ok = validateConfig(BuildIndexConfigSchema, {
    remotes: [{ name: 'dc2', buildIndex: 'b:15004', origins: ['b:15002'], tags: ['^x-'] }],
  })
  t.equal(ok.remotes.length, 1)
  t.equal(ok.replication.maxBackoffMs, 60_000)
  t.same(validateConfig(BuildIndexConfigSchema, {}).remotes, [])
  t.throws(
    () =>
      validateConfig(BuildIndexConfigSchema, {
        remotes: [{ name: 'dc2', buildIndex: 'b:1', origins: ['b:2'], tags: ['(unclosed'] }],
      }),
    { code: 'CONFIG_INVALID', message: /regular expression/ },
  )
  t.throws(
    () =>
      validateConfig(BuildIndexConfigSchema, {
        remotes: [{ name: 'dc 2', buildIndex: 'b:1', origins: ['b:2'], tags: ['x'] }],
      }),
    { code: 'CONFIG_INVALID' },
  )
  t.throws(
    () =>
      validateConfig(BuildIndexConfigSchema, {
        remotes: [{ name: 'dc2', buildIndex: 'b:1', origin: ['b:2'], tags: ['x'] }],
      }),
    { code: 'CONFIG_INVALID', message: /origin/ },
  )
})
