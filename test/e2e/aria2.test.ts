/**
 * Interoperability with a stock BitTorrent client, aria2c (Debian package `aria2`), through
 * Shoal's own tracker, in both directions; and the MSE/PE handshake stock clients open with
 * (docs/interop.md). The aria2c tests are skipped when aria2c is not installed; CI installs it.
 */
import { createDiffieHellman, createHash, randomBytes } from 'node:crypto'
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { AgentServer } from '../../lib/agent/server/index.js'
import { pull } from '../../lib/cli/pull.js'
import { push } from '../../lib/cli/push.js'
import { validateConfig } from '../../lib/config/index.js'
import { bencodeDecode } from '../../lib/core/bencode.js'
import { type Digest, digestFile, MetaInfo } from '../../lib/core/index.js'
import type { Herd } from '../../lib/herd/index.js'
import { createLogger, type Logger, silentLogger } from '../../lib/log/index.js'
import { MemoryStorage, TorrentEngine } from '../../lib/torrent/index.js'
import { Rc4 } from '../../lib/torrent/wire/rc4.js'
import {
  aria2Available,
  firstBlockMs,
  freeListenPort,
  startAria2,
  until,
  waitExit,
} from '../helpers/aria2.js'
import { randomFile, tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'

/** SHOAL_TEST_LOG=/path/file.log writes the daemons' debug logs there. */
const logFile = process.env.SHOAL_TEST_LOG
const logger = logFile ? createLogger({ level: 'debug', destination: logFile }) : silentLogger()
const skip = aria2Available() ? false : 'aria2c is not installed (Debian package aria2)'
const MiB = 1 << 20

async function herdWithBlob(
  t: Test,
  size: number,
): Promise<{
  herd: Herd
  dir: string
  src: string
  tag: string
  digest: Digest
  meta: MetaInfo
  torrent: string
}> {
  const dir = await tempDir(t, 'shoal-aria2-')
  const herd = await startTestHerd(t, dir, { logger })
  const src = join(dir, 'blob.bin')
  await randomFile(src, size)
  const pushed = await push({ srcPath: src, srcHost: 'h1', dstHost: herd.urls.proxy })
  // The .torrent exactly as a stock client would fetch it: from the tracker, by digest.
  const res = await fetch(`${herd.urls.tracker}/namespace/default/blobs/${pushed.digest}/metainfo`)
  t.equal(res.status, 200, 'the tracker serves the metainfo')
  const raw = Buffer.from(await res.arrayBuffer())
  const torrent = join(dir, 'blob.torrent')
  await writeFile(torrent, raw)
  const meta = MetaInfo.parse(raw)
  t.equal(meta.announce, `${herd.urls.tracker}/announce`, "the .torrent announces to Shoal's tracker")
  return { herd, dir, src, tag: pushed.tag.toString(), digest: pushed.digest, meta, torrent }
}

/** Complete peers the tracker knows for the torrent, asked with a `stopped` probe (registers nothing). */
async function seedersOnTracker(herd: Herd, meta: MetaInfo): Promise<number> {
  const q = [
    `info_hash=${escapeBytes(meta.infoHash.toBuffer())}`,
    `peer_id=${escapeBytes(Buffer.from('-XX0000-probeprobe00', 'latin1'))}`,
    'port=1',
    'uploaded=0',
    'downloaded=0',
    'left=1',
    'compact=1',
    'event=stopped',
  ].join('&')
  const res = await fetch(`${herd.urls.tracker}/announce?${q}`)
  const body = bencodeDecode(Buffer.from(await res.arrayBuffer())) as { complete?: number }
  return body.complete ?? 0
}

function escapeBytes(b: Uint8Array): string {
  let s = ''
  for (const x of b) s += `%${x.toString(16).padStart(2, '0')}`
  return s
}

t.test('aria2c downloads a pushed blob from the origin through Shoal’s tracker', { skip }, async (t) => {
  const size = 16 * MiB
  const { herd, dir, digest, meta, torrent } = await herdWithBlob(t, size)
  const out = join(dir, 'aria2-out')
  const log = join(dir, 'aria2.log')
  const run = startAria2(t, [`--dir=${out}`, '--seed-time=0', `--log=${log}`, '--log-level=info', torrent])
  const code = await waitExit(run, 25_000)
  t.equal(code, 0, 'aria2c exits 0', { aria2c: run.output() })

  const copy = await digestFile(join(out, meta.name))
  t.ok(copy.digest.equals(digest), 'the file aria2c wrote has the pushed sha256')
  const served = herd.originNode.engine.stats(meta.infoHash)?.bytesUploaded ?? 0
  t.ok(served >= size, `the origin served the blob (${served} bytes uploaded)`)

  const text = await readFile(log, 'utf8')
  t.notMatch(
    text,
    /Retry using legacy BitTorrent handshake/,
    'aria2’s MSE handshake was accepted, no fallback',
  )
  t.match(text, /To: 127\.0\.0\.1:\d+ handshake/, 'aria2 connected to the origin from the tracker’s list')
  t.comment(
    `aria2c: first block ${await firstBlockMs(run, log)} ms after spawn, done in ${Date.now() - run.startedAt} ms`,
  )
})

t.test('aria2c with RC4 required (--bt-force-encryption) downloads too', { skip }, async (t) => {
  const { dir, digest, meta, torrent } = await herdWithBlob(t, 4 * MiB)
  const out = join(dir, 'aria2-out')
  const run = startAria2(t, [`--dir=${out}`, '--seed-time=0', '--bt-force-encryption=true', torrent])
  t.equal(await waitExit(run, 25_000), 0, 'aria2c exits 0', { aria2c: run.output() })
  const copy = await digestFile(join(out, meta.name))
  t.ok(copy.digest.equals(digest), 'the RC4-encrypted transfer is byte-identical')
})

t.test('a Shoal agent downloads from an aria2c seeder announced to Shoal’s tracker', { skip }, async (t) => {
  const size = 16 * MiB
  const { herd, dir, src, tag, digest, meta, torrent } = await herdWithBlob(t, size)
  // The origin stops seeding this blob: the only complete peer left will be aria2c.
  herd.originNode.engine.remove(meta.infoHash)
  await until(async () => (await seedersOnTracker(herd, meta)) === 0, 5_000, 'the origin’s stopped announce')

  const seedDir = join(dir, 'aria2-seed')
  await mkdir(seedDir)
  await copyFile(src, join(seedDir, meta.name))
  const port = await freeListenPort()
  const seeder = startAria2(t, [
    `--dir=${seedDir}`,
    `--listen-port=${port}`,
    '--check-integrity=true',
    '--seed-ratio=0.0',
    torrent,
  ])
  await until(
    async () => (await seedersOnTracker(herd, meta)) === 1,
    10_000,
    'aria2c on the tracker as a seeder',
  )

  const agent = new AgentServer(
    validateConfig(AgentConfigSchema, {
      server: { port: 0 },
      peer: { host: '127.0.0.1', port: 0 },
      dataDir: join(dir, 'agent'),
      trackers: [herd.urls.tracker],
      buildIndex: herd.urls.buildIndex,
      stallTimeoutSeconds: 20,
    }),
    { logger },
  )
  await agent.start()
  t.teardown(() => agent.stop())
  const result = await pull({ tag, dstPath: join(dir, 'pulled'), dstHost: agent.url, timeoutSeconds: 25 })
  const copy = await digestFile(result.path)
  t.ok(copy.digest.equals(digest), 'the pulled file has the pushed sha256')
  const p = await agent.progressOf(digest)
  t.equal(p.bytesFromOrigins, 0, 'nothing came from the origin')
  t.ok(p.bytesFromAgents >= size, `every byte came from the aria2c peer (${p.bytesFromAgents})`)
  t.equal(seeder.proc.exitCode, null, 'aria2c was still seeding', { aria2c: seeder.output() })
})

// ----- MSE/PE without aria2: a minimal initiator (side A of the spec) against an engine -----

const PRIME = Buffer.from(
  'ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f14374fe1356d6d51c245e485b576625e7ec6f44c42e9a63a36210000000000090563',
  'hex',
)
const PSTR = Buffer.from('\x13BitTorrent protocol', 'latin1')

const sha1 = (...parts: Array<string | Buffer>) => {
  const h = createHash('sha1')
  for (const p of parts) h.update(p)
  return h.digest()
}
const pad96 = (b: Buffer) => Buffer.concat([Buffer.alloc(96 - b.length), b])

/** Buffered reads off a socket: exactly n bytes, or everything up to a marker. */
class Reader {
  private buf = Buffer.alloc(0)
  private wake: (() => void) | undefined
  private ended = false
  constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d])
      this.wake?.()
    })
    socket.on('close', () => {
      this.ended = true
      this.wake?.()
    })
    socket.on('error', () => undefined)
  }
  private async need(ok: () => boolean): Promise<void> {
    while (!ok()) {
      if (this.ended) throw new Error('connection closed')
      await new Promise<void>((r) => {
        this.wake = r
      })
    }
  }
  async read(n: number): Promise<Buffer> {
    await this.need(() => this.buf.length >= n)
    const out = this.buf.subarray(0, n)
    this.buf = this.buf.subarray(n)
    return out
  }
  async skipThrough(marker: Buffer, max: number): Promise<void> {
    await this.need(() => {
      if (this.buf.indexOf(marker) >= 0) return true
      if (this.buf.length > max) throw new Error('marker not found')
      return false
    })
    this.buf = this.buf.subarray(this.buf.indexOf(marker) + marker.length)
  }
}

interface Opened {
  reader: Reader
  select: number
  send(b: Buffer): void
  recv(n: number): Promise<Buffer>
}

/** The initiator's side of MSE: offers `provide`, optionally with IA; resolves after step 4. */
async function mseOpen(
  port: number,
  infoHash: Buffer,
  provide: number,
  ia: Buffer = Buffer.alloc(0),
): Promise<Opened> {
  const socket = connect({ host: '127.0.0.1', port })
  const reader = new Reader(socket)
  const dh = createDiffieHellman(PRIME, 2)
  dh.setPrivateKey(randomBytes(20))
  socket.write(Buffer.concat([pad96(dh.generateKeys()), randomBytes(100)]))
  const secret = pad96(dh.computeSecret(await reader.read(96)))
  const enc = new Rc4(sha1('keyA', secret, infoHash))
  const dec = new Rc4(sha1('keyB', secret, infoHash))
  const req23 = sha1('req2', infoHash)
  const req3 = sha1('req3', secret)
  for (let i = 0; i < 20; i++) req23[i]! ^= req3[i]!
  const body = Buffer.alloc(8 + 4 + 2 + 2 + ia.length)
  body.writeUInt32BE(provide, 8)
  body.writeUInt16BE(0, 12) // len(PadC)
  body.writeUInt16BE(ia.length, 14)
  ia.copy(body, 16)
  socket.write(Buffer.concat([sha1('req1', secret), req23, enc.update(body)]))
  // The responder's PadB precedes ENCRYPT(VC): find VC's ciphertext, the keystream's next 8 bytes.
  await reader.skipThrough(dec.update(Buffer.alloc(8)), 512 + 8)
  const head = dec.update(Buffer.from(await reader.read(6)))
  const select = head.readUInt32BE(0)
  dec.update(Buffer.from(await reader.read(head.readUInt16BE(4))))
  const rc4 = select === 2
  return {
    reader,
    select,
    send: (b) => socket.write(rc4 ? enc.update(b, Buffer.alloc(b.length)) : b),
    recv: async (n) => {
      const b = Buffer.from(await reader.read(n))
      return rc4 ? dec.update(b) : b
    },
  }
}

function handshake(infoHash: Buffer): Buffer {
  return Buffer.concat([PSTR, Buffer.alloc(8), infoHash, Buffer.from('-XX0000-mse-test-id-', 'latin1')])
}

/** Reads messages until a piece message arrives; returns its block. */
async function readPiece(c: Opened): Promise<Buffer> {
  for (;;) {
    const len = (await c.recv(4)).readUInt32BE(0)
    if (len === 0) continue
    const msg = await c.recv(len)
    if (msg[0] === 7) return msg.subarray(9)
  }
}

async function seedingEngine(
  t: Test,
  engineLogger: Logger = logger,
): Promise<{ engine: TorrentEngine; meta: MetaInfo; data: Buffer }> {
  const dir = await tempDir(t, 'shoal-mse-')
  const data = randomBytes(1 * MiB)
  await writeFile(join(dir, 'blob'), data)
  const meta = await MetaInfo.create(join(dir, 'blob'), {
    name: 'blob',
    announce: 'http://127.0.0.1:1/announce',
    size: data.length,
    pieceLength: 256 << 10,
  })
  const engine = new TorrentEngine({
    role: 'origin',
    host: '127.0.0.1',
    port: 0,
    logger: engineLogger,
    peerSource: { announce: async () => ({ interval: 60, peers: [] }) },
  })
  await engine.start()
  t.teardown(() => engine.stop())
  engine.seed(meta, MemoryStorage.complete(meta, data))
  return { engine, meta, data }
}

t.test('MSE/PE responder, driven by a minimal initiator', async (t) => {
  // Why the engine failed each MSE stage, by the peer's address (its debug log).
  const failures = new Map<string, string>()
  const write = (line: string) => {
    const e = JSON.parse(line) as { msg?: string; peer?: string; reason?: string }
    if (e.msg === 'MSE handshake failed' && e.peer !== undefined && e.reason !== undefined)
      failures.set(e.peer, e.reason)
  }
  const { engine, meta, data } = await seedingEngine(
    t,
    createLogger({ level: 'debug', destination: { write } }),
  )
  const ih = meta.infoHash.toBuffer()
  const closed = (s: Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())))

  t.test('plaintext is chosen when offered; then plain BitTorrent flows', async (t) => {
    const c = await mseOpen(engine.port, ih, 0x01 | 0x02)
    t.teardown(() => c.reader.socket.destroy())
    t.equal(c.select, 0x01, 'crypto_select = plaintext')
    c.send(handshake(ih))
    const hs = await c.recv(68)
    t.same(hs.subarray(0, 20), PSTR, 'the engine answers with a plain handshake')
    t.same(hs.subarray(28, 48), ih, 'for the torrent named by the SKEY')
  })

  t.test('RC4 when that is all the peer offers: a block arrives intact', async (t) => {
    const c = await mseOpen(engine.port, ih, 0x02)
    t.teardown(() => c.reader.socket.destroy())
    t.equal(c.select, 0x02, 'crypto_select = RC4')
    c.send(handshake(ih))
    t.same((await c.recv(68)).subarray(28, 48), ih, 'the decrypted handshake names the torrent')
    const interested = Buffer.from([0, 0, 0, 1, 2])
    const request = Buffer.alloc(17)
    request.writeUInt32BE(13, 0)
    request[4] = 6
    request.writeUInt32BE(1, 5) // piece 1
    request.writeUInt32BE(16384, 9)
    request.writeUInt32BE(16384, 13)
    c.send(Buffer.concat([interested, request]))
    const block = await readPiece(c)
    t.same(block, data.subarray((256 << 10) + 16384, (256 << 10) + 32768), 'the block decrypts to the data')
  })

  t.test('the BitTorrent handshake may ride in IA', async (t) => {
    const c = await mseOpen(engine.port, ih, 0x01, handshake(ih))
    t.teardown(() => c.reader.socket.destroy())
    t.equal(c.select, 0x01)
    t.same((await c.recv(68)).subarray(28, 48), ih, 'the engine read the handshake from IA')
  })

  t.test('an SKEY naming no torrent of ours is refused', async (t) => {
    await t.rejects(mseOpen(engine.port, randomBytes(20), 0x03), /connection closed/)
  })

  t.test('garbage that never shows HASH(req1, S) is cut off', async (t) => {
    const s = connect({ host: '127.0.0.1', port: engine.port })
    s.on('error', () => undefined)
    s.resume() // read (and drop) the engine's key, so the close is seen
    let port: number | undefined
    s.once('connect', () => {
      port = s.localPort
    })
    s.write(randomBytes(96 + 700))
    await closed(s)
    t.equal(failures.get(`127.0.0.1:${port}`), 'no HASH(req1, S) within PadA', 'closed by the engine')
  })

  t.test('a plain handshake split into single bytes still passes through', async (t) => {
    const s = connect({ host: '127.0.0.1', port: engine.port })
    t.teardown(() => s.destroy())
    s.setNoDelay(true)
    const reader = new Reader(s)
    const hs = handshake(ih)
    for (let i = 0; i < 24; i++) {
      s.write(hs.subarray(i, i + 1))
      await new Promise((r) => setTimeout(r, 2))
    }
    s.write(hs.subarray(24))
    t.same((await reader.read(68)).subarray(28, 48), ih, 'answered with our handshake')
  })
})
