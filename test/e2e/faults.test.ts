/**
 * Faults at the system level: a herd (in this process), agents as separate processes, and
 * misbehaving peers that announce to the herd's tracker like any seeder.
 *
 * - an agent killed with SIGKILL half way through a download, restarted on the same data
 *   folder, resumes by itself from its persisted bitfield and re-downloads little;
 * - a peer that answers requests with garbage is detected and banned, the file is still right;
 * - a peer that takes requests and never answers does not stall the download.
 *
 * Agents run from the TypeScript sources through tsx (as tap runs the tests), so the test
 * exercises the code in the tree rather than whatever dist/ was last built from.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { AgentClient, type DownloadProgress } from '../../lib/agent/client/index.js'
import { pull } from '../../lib/cli/pull.js'
import { push } from '../../lib/cli/push.js'
import { type Digest, digestFile, MetaInfo } from '../../lib/core/index.js'
import type { Herd } from '../../lib/herd/index.js'
import { OriginClient } from '../../lib/origin/client/index.js'
import { TrackerClient } from '../../lib/tracker/client/index.js'
import { randomFile, tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'

const MiB = 1 << 20

async function pushRandom(herd: Herd, dir: string, size: number) {
  const src = join(dir, 'src', `blob-${size}.bin`)
  await mkdir(join(dir, 'src'), { recursive: true })
  await randomFile(src, size)
  const pushed = await push({ srcPath: src, srcHost: 'faults', dstHost: herd.urls.proxy })
  const meta = MetaInfo.parse(await new OriginClient(herd.urls.origin).metainfo('default', pushed.digest))
  return { tag: pushed.tag.toString(), digest: pushed.digest, meta, size }
}

interface AgentProcess {
  readonly api: string
  readonly client: AgentClient
  readonly log: string
  readonly child: ChildProcess
  readonly exited: Promise<unknown>
}

/**
 * Starts `shoal-agent` as a process on `dataDir` and waits until it is ready. It binds port 0
 * for both listeners and says which ports it got in its "agent started" log line: no port is
 * probed and released first, which another test file running alongside could take meanwhile.
 */
async function spawnAgent(
  t: Test,
  herd: Herd,
  dir: string,
  name: string,
  dataDir: string,
  extra: Record<string, unknown> = {},
): Promise<AgentProcess> {
  const log = join(dir, `${name}.log`)
  const config = join(dir, `${name}.yaml`)
  const settings = {
    log: { level: 'info', file: log },
    server: { host: '127.0.0.1', port: 0 },
    peer: { host: '127.0.0.1', port: 0 },
    dataDir,
    trackers: [herd.urls.tracker],
    buildIndex: herd.urls.buildIndex,
    stallTimeoutSeconds: 20,
    ...extra,
  }
  await writeFile(config, JSON.stringify(settings)) // JSON is YAML
  const child = spawn(process.execPath, ['--import=tsx', resolve('cmd/shoal-agent.ts'), '--config', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  const exited = once(child, 'exit')
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  })
  let api = ''
  for (let i = 0; !api; i++) {
    if (child.exitCode !== null) throw new Error(`${name} exited at start: ${stderr}`)
    if (i > 300) throw new Error(`${name} did not start within 30 s: ${stderr}`)
    await sleep(100)
    api = (await startedLine(log, child.pid))?.api ?? ''
  }
  const client = new AgentClient(api, { timeoutMs: 2000 })
  const ready = await client.http.status('GET', '/readiness', { accept: [503] })
  if (ready !== 200) throw new Error(`${name} started but is not ready (${ready}): ${stderr}`)
  return { api, client, log, child, exited }
}

/** The "agent started" line process `pid` wrote to `log` (a restarted agent appends to it). */
async function startedLine(log: string, pid: number | undefined): Promise<{ api: string } | undefined> {
  const text = await readFile(log, 'utf8').catch(() => '')
  for (const line of text.split('\n')) {
    if (!line.includes('"agent started"')) continue
    const entry = JSON.parse(line) as { pid: number; api: string }
    if (entry.pid === pid) return entry
  }
  return undefined
}

async function metricSum(api: string, name: string): Promise<number> {
  const text = await (await fetch(`${api}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n'))
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  return sum
}

/** The agent component's log messages (the engine logs under its own component). */
async function agentLogMessages(log: string): Promise<string[]> {
  const text = await readFile(log, 'utf8').catch(() => '')
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { msg: string; component?: string })
    .filter((l) => l.component === 'agent')
    .map((l) => l.msg)
}

t.test(
  'an agent killed with SIGKILL half way resumes after a restart and re-downloads at most 10 %',
  async (t) => {
    const dir = await tempDir(t, 'shoal-faults-')
    const herd = await startTestHerd(t, dir, { peerTtlSeconds: 30 })
    // At loopback speed the second half of 64 MiB still lasts a few hundred ms: plenty for a
    // progress poll every few ms to see "half way" and kill there.
    const { tag, digest, meta, size } = await pushRandom(herd, dir, 64 * MiB)
    const dataDir = join(dir, 'agent-data')

    const first = await spawnAgent(t, herd, dir, 'agent-life-1', dataDir)
    // Start the download the way PullCLI does; this request dies with the agent.
    void first.client.blob('default', digest).then(
      (r) => r.body.resume(),
      () => undefined,
    )
    let before: DownloadProgress | undefined
    for (let i = 0; i < 3000; i++) {
      before = await first.client.progress(digest).catch(() => undefined)
      if (before && before.pieceCount > 0 && before.piecesDone >= before.pieceCount / 2) break
      await sleep(5)
    }
    first.child.kill('SIGKILL')
    await first.exited
    t.ok(before, 'progress was observed')
    const seen = before as DownloadProgress
    t.ok(seen.piecesDone >= seen.pieceCount / 2, `killed at ${seen.piecesDone}/${seen.pieceCount} pieces`)
    t.ok(seen.piecesDone < seen.pieceCount, 'killed before the download finished')
    t.ok((seen.peers ?? 0) >= 1, `a download under way reports its peers (${seen.peers})`)
    t.ok(
      (seen.bytesReceived ?? 0) >= seen.bytesFromOrigins + seen.bytesFromAgents,
      'bytesReceived counts blocks',
    )
    t.ok((await stat(join(dataDir, 'resume', `${digest.hex}.json`))).isFile(), 'the download is journaled')

    // Same data folder: the restarted agent picks the download up by itself...
    const second = await spawnAgent(t, herd, dir, 'agent-life-2', dataDir)
    const resumed = await second.client.progress(digest)
    t.ok(['downloading', 'done'].includes(resumed.state), `resumed without being asked (${resumed.state})`)
    // ...and a PullCLI asking meanwhile joins that download rather than starting another.
    const out = join(dir, 'out')
    const pulled = await pull({ tag, dstPath: out, dstHost: second.api, timeoutSeconds: 25 })
    t.ok((await digestFile(pulled.path)).digest.equals(digest), 'the pulled file has the pushed sha256')

    const after = await second.client.progress(digest)
    t.equal(after.state, 'done')
    const resumedPieces = after.resumedPieces ?? 0
    const newBytes = after.bytesFromOrigins + after.bytesFromAgents
    const lostPieces = Math.max(0, seen.piecesDone - resumedPieces)
    // Bytes fetched twice: what the first life had verified (at least what was seen before the
    // kill) plus what the second life fetched, beyond the size of the blob. Pieces verified
    // between the last look and the kill make this an estimate from below by at most that much.
    const redownloaded = Math.max(0, seen.piecesDone * meta.pieceLength + newBytes - size)
    t.comment(
      `killed at ${seen.piecesDone}/${seen.pieceCount} pieces; resumed with ${resumedPieces} ` +
        `(${lostPieces} lost); fetched ${newBytes} new bytes of ${size}; re-downloaded ${redownloaded} ` +
        `(${((100 * redownloaded) / size).toFixed(1)} %)`,
    )
    t.ok(resumedPieces > 0, 'the persisted bitfield was used')
    t.ok(redownloaded <= 0.1 * size, `re-downloaded at most 10 % (${redownloaded} bytes)`)
    t.equal(after.piecesDone, after.pieceCount)

    const msgs = await agentLogMessages(second.log)
    t.equal(msgs.filter((m) => m === 'download resumed after a restart').length, 1, 'one resumed download')
    t.equal(msgs.filter((m) => m === 'download started').length, 0, 'the pull started no download of its own')
  },
)

type FakeMode = 'corrupt' | 'stall'

interface FakeSeeder {
  port: number
  requests: number
  connections: number
}

/**
 * A seeder that speaks plain BEP 3 (as a stock client would), claims every piece, unchokes at
 * once, and answers requests with random bytes ('corrupt') or never ('stall'). It announces
 * itself to the tracker as complete, so the tracker hands it out right after the origin.
 */
async function fakeSeeder(t: Test, herd: Herd, meta: MetaInfo, mode: FakeMode): Promise<FakeSeeder> {
  const infoHash = meta.infoHash.toBuffer()
  const peerId = Buffer.concat([Buffer.from('-FK0001-'), randomBytes(12)])
  const state: FakeSeeder = { port: 0, requests: 0, connections: 0 }
  const sockets = new Set<Socket>()
  const bitfield = Buffer.alloc(Math.ceil(meta.pieceCount / 8))
  for (let i = 0; i < meta.pieceCount; i++)
    bitfield[i >> 3] = (bitfield[i >> 3] as number) | (0x80 >> (i & 7))
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    state.connections++
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
    let buf = Buffer.alloc(0)
    let shook = false
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      if (!shook) {
        if (buf.length < 68) return
        if (!buf.subarray(28, 48).equals(infoHash)) return socket.destroy()
        shook = true
        buf = buf.subarray(68)
        const hs = Buffer.alloc(68)
        hs[0] = 19
        hs.write('BitTorrent protocol', 1, 'latin1')
        infoHash.copy(hs, 28)
        peerId.copy(hs, 48)
        socket.write(hs)
        socket.write(message(5, bitfield))
        socket.write(message(1)) // unchoke: every request is welcome
      }
      while (buf.length >= 4) {
        const len = buf.readUInt32BE(0)
        if (buf.length < 4 + len) return
        const id = len > 0 ? buf[4] : -1
        const payload = buf.subarray(5, 4 + len)
        buf = buf.subarray(4 + len)
        if (id !== 6) continue // only requests matter; the rest is ignored
        state.requests++
        if (mode === 'stall') continue
        const piece = payload.readUInt32BE(0)
        const offset = payload.readUInt32BE(4)
        const length = payload.readUInt32BE(8)
        const head = Buffer.alloc(8)
        head.writeUInt32BE(piece, 0)
        head.writeUInt32BE(offset, 4)
        socket.write(message(7, Buffer.concat([head, randomBytes(length)])))
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  state.port = (server.address() as { port: number }).port
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  )
  await new TrackerClient(herd.urls.tracker).announce({
    infoHash: meta.infoHash,
    peerId,
    port: state.port,
    uploaded: 0,
    downloaded: 0,
    left: 0,
    event: 'completed',
  })
  return state
}

function message(id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5)
  head.writeUInt32BE(payload.length + 1, 0)
  head[4] = id
  return Buffer.concat([head, payload])
}

async function pullThroughFaultyPeer(t: Test, mode: FakeMode) {
  const dir = await tempDir(t, 'shoal-faults-')
  const herd = await startTestHerd(t, dir, { peerTtlSeconds: 30 })
  const { tag, digest, meta } = await pushRandom(herd, dir, 64 * MiB)
  const fake = await fakeSeeder(t, herd, meta, mode)
  const agent = await spawnAgent(t, herd, dir, `agent-${mode}`, join(dir, 'agent-data'))
  const pulled = await pull({ tag, dstPath: join(dir, 'out'), dstHost: agent.api, timeoutSeconds: 25 })
  const progress = await agent.client.progress(digest)
  return { agent, fake, pulled, progress, digest: digest as Digest }
}

t.test('a peer that sends corrupted pieces is detected and banned; the file is still right', async (t) => {
  const { agent, fake, pulled, progress, digest } = await pullThroughFaultyPeer(t, 'corrupt')
  t.ok((await digestFile(pulled.path)).digest.equals(digest), 'the pulled file has the pushed sha256')
  t.ok(fake.requests > 0, `the liar was asked for ${fake.requests} blocks`)
  t.ok((await metricSum(agent.api, 'shoal_torrent_pieces_failed_total')) >= 1, 'a bad piece was detected')
  t.ok((await metricSum(agent.api, 'shoal_torrent_peer_bans_total')) >= 1, 'the liar was banned')
  t.equal(progress.bytesFromAgents, 0, 'no byte from the liar survived verification')
  t.equal(progress.bytesFromOrigins, progress.size, 'every verified byte came from the origin')
})

t.test('a stalled peer (takes requests, never answers) does not stall the download', async (t) => {
  const { fake, pulled, progress, digest } = await pullThroughFaultyPeer(t, 'stall')
  t.ok((await digestFile(pulled.path)).digest.equals(digest), 'the pulled file has the pushed sha256')
  t.ok(fake.requests > 0, `the stalled peer was asked for ${fake.requests} blocks and answered none`)
  t.equal(progress.state, 'done')
  t.equal(progress.bytesFromOrigins, progress.size, 'everything came from the origin')
  t.comment(`pull took ${pulled.seconds.toFixed(2)} s with a stalled peer in the swarm`)
})
