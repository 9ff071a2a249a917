/**
 * Wire micro-benchmark: MB/s of one transfer between two processes on loopback.
 *
 *   node --import tsx test/bench/wire.ts [--size-mib 256] [--runs 3] [--baseline REV|none]
 *                 [--modes engine,parser] [--block-kib 16,64,128,256] [--storage sink|memory]
 *                 [--hash worker,inline] [--bandwidth off,unlimited,8MiB]
 *
 * engine: a seeder process and a leecher process, each a TorrentEngine over MemoryStorage; the
 *   leecher times download() from the call to the last verified piece (into a sink storage by
 *   default, so a memcpy into a MemoryStorage is not what is measured). It runs the engine of
 *   this checkout and, unless --baseline none, the engine of git revision REV (default: the
 *   skeleton's, before the wire rewrite), extracted to a temp folder, so "before" and "after"
 *   come from the same run on the same machine. --block-kib sets the block size Shoal peers
 *   negotiate (engines that do not know the option ignore it); --hash inline,worker compares
 *   SHA-1 on the leecher's main thread with SHA-1 on the hash worker (lib/torrent/download/hasher.ts).
 *   --bandwidth gives both engines of this checkout a HostBandwidth: `unlimited` (rates 0,
 *   what every daemon has by default) shows what the limiter's hooks cost when nothing is
 *   capped, a size caps both directions of both processes at that rate; `off` = no object.
 * parser: a sender process writes ready-made piece messages to a socket as fast as it can; the
 *   receiver parses them with bittorrent-protocol's Wire and with our WireReader, to show what
 *   the parser alone costs at each block size.
 */
import { execFileSync, fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(HERE, '../..')
/** The walking skeleton's engine (bittorrent-protocol Wire, fixed 64-deep pipeline, 16 KiB). */
const DEFAULT_BASELINE = '3eaeab2'

interface Args {
  storage: 'memory' | 'sink'
  hash: Array<'worker' | 'inline'>
  sizeMiB: number
  runs: number
  baseline: string
  modes: string[]
  blockKiB: number[]
  bandwidth: string[]
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    storage: 'sink',
    hash: ['inline'],
    sizeMiB: 256,
    runs: 3,
    baseline: DEFAULT_BASELINE,
    modes: ['engine', 'parser'],
    blockKiB: [],
    bandwidth: ['off'],
  }
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1] ?? ''
    switch (argv[i]) {
      case '--size-mib':
        a.sizeMiB = Number(v)
        i++
        break
      case '--runs':
        a.runs = Number(v)
        i++
        break
      case '--baseline':
        a.baseline = v
        i++
        break
      case '--modes':
        a.modes = v.split(',')
        i++
        break
      case '--hash':
        a.hash = v.split(',').map((h) => (h === 'worker' ? 'worker' : 'inline'))
        i++
        break
      case '--storage':
        a.storage = v === 'memory' ? 'memory' : 'sink'
        i++
        break
      case '--bandwidth':
        a.bandwidth = v.split(',')
        i++
        break
      case '--block-kib':
        a.blockKiB = v.split(',').map(Number)
        i++
        break
      default:
        throw new Error(`unknown flag ${argv[i]}`)
    }
  }
  return a
}

// ----- child processes -----

interface ChildMsg {
  role: 'seeder' | 'leecher' | 'send' | 'recv'
  root: string
  torrent?: string
  dataFile?: string
  seederPort?: number
  blockSize?: number
  port?: number
  parser?: 'wire' | 'reader'
  messages?: number
  blockBytes?: number
  storage?: 'memory' | 'sink'
  hashOnWorker?: boolean
  /** 'off', 'unlimited' or a rate for both directions ("8MiB"). */
  bandwidth?: string
}

async function child(msg: ChildMsg): Promise<void> {
  const send = (m: unknown) => process.send?.(m)
  if (msg.role === 'send' || msg.role === 'recv') return parserChild(msg, send)
  const { readFileSync } = await import('node:fs')
  const core = await import(pathToFileURL(join(msg.root, 'lib/core/index.js')).href)
  const torrent = await import(pathToFileURL(join(msg.root, 'lib/torrent/index.js')).href)
  const { silentLogger } = await import(pathToFileURL(join(msg.root, 'lib/log/index.js')).href)
  const meta = core.MetaInfo.parse(readFileSync(msg.torrent!))
  let bandwidth: { close(): void } | undefined
  if (msg.bandwidth !== undefined && msg.bandwidth !== 'off') {
    const bw = await import(pathToFileURL(join(msg.root, 'lib/bandwidth/index.js')).href)
    const rate = msg.bandwidth === 'unlimited' ? 0 : bw.parseByteSize(msg.bandwidth)
    if (typeof rate !== 'number') throw new Error(rate)
    bandwidth = new bw.HostBandwidth({ egressBytesPerSec: rate, ingressBytesPerSec: rate, burstBytes: 0 })
  }
  const peers = msg.seederPort ? [{ ip: '127.0.0.1', port: msg.seederPort }] : []
  const engine = new torrent.TorrentEngine({
    role: msg.role === 'seeder' ? 'origin' : 'agent',
    host: '127.0.0.1',
    port: 0,
    logger: silentLogger(),
    peerSource: { announce: async () => ({ interval: 60, peers }) },
    ...(msg.blockSize ? { blockSize: msg.blockSize } : {}),
    hashOnWorker: msg.hashOnWorker === true,
    ...(bandwidth ? { bandwidth } : {}),
  })
  await engine.start()
  if (msg.role === 'seeder') {
    engine.seed(meta, torrent.MemoryStorage.complete(meta, readFileSync(msg.dataFile!)))
    const cpu0 = process.cpuUsage() // set-up (reading the file, loading code) is not counted
    send({ port: engine.port })
    process.on('message', async () => {
      const cpu = process.cpuUsage(cpu0)
      await engine.stop()
      send({ cpu })
      process.exit(0)
    })
    return
  }
  // A sink by default: copying 256 MiB into a fresh MemoryStorage (page faults included) cost
  // the leecher more than the whole wire did, and a real agent writes to a file instead.
  const store = msg.storage === 'memory' ? new torrent.MemoryStorage(meta) : new SinkStorage(meta.pieceCount)
  const cpu0 = process.cpuUsage()
  const elu0 = performance.eventLoopUtilization()
  const t0 = performance.now()
  await engine.download(meta, store)
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  // How busy the main thread was: near 1, it is the bottleneck (not the network, not the seeder).
  const elu = performance.eventLoopUtilization(elu0).utilization
  await engine.stop()
  send({ seconds, cpu, elu })
  process.exit(0)
}

/** Sender: N piece messages of blockBytes each; receiver: parse with Wire or WireReader. */
async function parserChild(msg: ChildMsg, send: (m: unknown) => void): Promise<void> {
  const n = msg.messages!
  const len = msg.blockBytes!
  if (msg.role === 'send') {
    const s = connect({ host: '127.0.0.1', port: msg.port! })
    const block = randomBytes(len)
    s.write(handshakeBytes())
    let i = 0
    const pump = () => {
      while (i < n) {
        const head = Buffer.allocUnsafe(13)
        head.writeUInt32BE(9 + len, 0)
        head[4] = 7
        head.writeUInt32BE(i, 5)
        head.writeUInt32BE(0, 9)
        s.cork()
        s.write(head)
        const ok = s.write(block)
        s.uncork()
        i++
        if (!ok) return void s.once('drain', pump)
      }
      s.end()
    }
    s.once('connect', pump)
    s.once('close', () => process.exit(0))
    return
  }
  let received = 0
  let t0 = 0
  const done = (socket: Socket) => {
    const seconds = (performance.now() - t0) / 1000
    send({ seconds, cpu: process.cpuUsage() })
    socket.destroy()
    process.exit(0)
  }
  const server = createServer(async (socket) => {
    t0 = performance.now()
    if (msg.parser === 'wire') {
      const { default: Wire } = await import('bittorrent-protocol')
      const wire = new Wire('tcpIncoming')
      wire.on('handshake', () => {})
      wire.on('piece', () => {
        if (++received === n) done(socket)
      })
      socket.on('data', (c: Buffer) => wire.write(c))
    } else {
      const { WireReader } = await import(pathToFileURL(join(msg.root, 'lib/torrent/wire/wire.js')).href)
      const sink = new CountingSink(n, () => done(socket))
      const reader = new WireReader(sink, len)
      socket.on('data', (c: Buffer) => reader.push(c))
    }
  })
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address()
    send({ port: typeof addr === 'object' && addr ? addr.port : 0 })
  })
}

/** TorrentStorage that keeps nothing: the leecher's side of the wire without a disk. */
class SinkStorage {
  private readonly have: Uint8Array
  constructor(readonly pieceCount: number) {
    this.have = new Uint8Array(pieceCount)
  }
  hasPiece(i: number): boolean {
    return this.have[i] === 1
  }
  async readBlock(): Promise<Buffer> {
    throw new Error('a sink has nothing to serve')
  }
  async writePiece(i: number): Promise<void> {
    this.have[i] = 1
  }
}

/** A WireReader handler that only counts piece messages. */
class CountingSink {
  private seen = 0
  constructor(
    private readonly n: number,
    private readonly onDone: () => void,
  ) {}
  onPiece(): void {
    if (++this.seen === this.n) this.onDone()
  }
  onHandshake(): void {}
  onMessage(): void {}
  onProtocolError(why: string): void {
    throw new Error(why)
  }
}

function handshakeBytes(): Buffer {
  return Buffer.concat([Buffer.from('\x13BitTorrent protocol', 'latin1'), Buffer.alloc(48)])
}

// ----- parent -----

function spawnChild(msg: ChildMsg) {
  // WIRE_BENCH_PROF=DIR writes a V8 CPU profile of each engine process there.
  const prof = process.env.WIRE_BENCH_PROF
  const cp = fork(fileURLToPath(import.meta.url), ['--child'], {
    execArgv: ['--import', 'tsx', ...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}/${msg.role}`] : [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  cp.send(msg)
  const next = () =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      cp.once('message', (m) => resolve(m as Record<string, unknown>))
      cp.once('exit', (code) => reject(new Error(`child ${msg.role} exited with ${code}`)))
    })
  return { cp, next }
}

async function engineRun(
  root: string,
  torrent: string,
  dataFile: string,
  size: number,
  storage: 'memory' | 'sink',
  blockSize?: number,
  hashOnWorker = false,
  bandwidth = 'off',
) {
  const seeder = spawnChild({ role: 'seeder', root, torrent, dataFile, blockSize, bandwidth })
  const { port } = (await seeder.next()) as { port: number }
  const leecher = spawnChild({
    role: 'leecher',
    root,
    torrent,
    seederPort: port,
    blockSize,
    storage,
    hashOnWorker,
    bandwidth,
  })
  const res = (await leecher.next()) as { seconds: number; cpu: NodeJS.CpuUsage; elu: number }
  seeder.cp.send('stop')
  const s = (await seeder.next()) as { cpu: NodeJS.CpuUsage }
  // CPU seconds per GiB moved: what the wire costs, whatever else the machine is doing.
  const perGiB = (c: NodeJS.CpuUsage) => ((c.user + c.system) / 1e6) * (2 ** 30 / size)
  return {
    mbps: size / res.seconds / 1e6,
    seconds: res.seconds,
    leecherCpu: perGiB(res.cpu),
    seederCpu: perGiB(s.cpu),
    elu: res.elu,
  }
}

async function parserRun(root: string, parser: 'wire' | 'reader', blockBytes: number, size: number) {
  const messages = Math.floor(size / blockBytes)
  const recv = spawnChild({ role: 'recv', root, parser, messages, blockBytes })
  const { port } = (await recv.next()) as { port: number }
  spawnChild({ role: 'send', root, port, messages, blockBytes })
  const res = (await recv.next()) as { seconds: number; cpu: NodeJS.CpuUsage }
  return { mbps: (messages * blockBytes) / res.seconds / 1e6, cpu: (res.cpu.user + res.cpu.system) / 1e6 }
}

function extractBaseline(rev: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-wire-baseline-'))
  const tar = execFileSync('git', ['-C', ROOT, 'archive', rev, 'lib', 'types', 'package.json'], {
    maxBuffer: 1 << 30, // the tree outgrew the default 1 MiB
  })
  execFileSync('tar', ['-x', '-C', dir], { input: tar })
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  return dir
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const size = args.sizeMiB << 20
  const work = mkdtempSync(join(tmpdir(), 'shoal-wire-bench-'))
  const cleanup: string[] = [work]
  try {
    console.log(
      `# wire bench: ${args.sizeMiB} MiB, ${args.runs} run(s) each, loopback, separate processes, ${args.storage} storage`,
    )
    if (args.modes.includes('engine')) {
      const dataFile = join(work, 'blob')
      writeFileSync(dataFile, randomBytes(size))
      const { MetaInfo } = await import('../../lib/core/index.js')
      const meta = await MetaInfo.create(dataFile, {
        name: 'blob',
        announce: 'http://127.0.0.1:1/announce',
        size,
      })
      const torrent = join(work, 'blob.torrent')
      writeFileSync(torrent, meta.raw)
      console.log(`# piece length ${meta.pieceLength >> 10} KiB, ${meta.pieceCount} pieces`)
      const roots: Array<[string, string, number | undefined, boolean, string]> = []
      if (args.baseline !== 'none') {
        const base = extractBaseline(args.baseline)
        cleanup.push(base)
        roots.push([`before (${args.baseline})`, base, undefined, false, 'off'])
      }
      const sizes = args.blockKiB.length > 0 ? args.blockKiB : [0]
      for (const bw of args.bandwidth) {
        for (const hash of args.hash) {
          for (const kib of sizes) {
            const name = `after${kib > 0 ? `, ${kib} KiB blocks` : ''}${args.hash.length > 1 ? `, SHA-1 ${hash}` : ''}${bw !== 'off' ? `, bandwidth ${bw}` : ''}`
            roots.push([name, ROOT, kib > 0 ? kib << 10 : undefined, hash === 'worker', bw])
          }
        }
      }
      console.log(
        'engine                                  MB/s median (min-max)   CPU s/GiB: leecher  seeder   leecher main thread busy',
      )
      for (const [name, root, blockSize, hashOnWorker, bw] of roots) {
        const runs = []
        for (let r = 0; r < args.runs; r++)
          runs.push(await engineRun(root, torrent, dataFile, size, args.storage, blockSize, hashOnWorker, bw))
        const mb = runs.map((x) => x.mbps)
        const range = `${median(mb).toFixed(0)} (${Math.min(...mb).toFixed(0)}-${Math.max(...mb).toFixed(0)})`
        const leecher = median(runs.map((x) => x.leecherCpu)).toFixed(2)
        const seeder = median(runs.map((x) => x.seederCpu)).toFixed(2)
        const busy = `${(median(runs.map((x) => x.elu)) * 100).toFixed(0)} %`
        console.log(
          `${name.padEnd(40)}${range.padEnd(24)}${leecher.padStart(17)}${seeder.padStart(8)}${busy.padStart(14)}`,
        )
      }
    }
    if (args.modes.includes('parser')) {
      console.log('parser (receiver only)        block   MB/s (median)   receiver CPU s')
      for (const kib of [16, 64, 128, 256, 1024]) {
        for (const parser of ['wire', 'reader'] as const) {
          // bittorrent-protocol re-copies its buffer per chunk: 1 MiB messages take minutes.
          const bytes = parser === 'wire' && kib >= 1024 ? Math.min(size, 32 << 20) : size
          const runs = []
          for (let r = 0; r < args.runs; r++) runs.push(await parserRun(ROOT, parser, kib << 10, bytes))
          const name =
            parser === 'wire' ? 'bittorrent-protocol Wire' : 'WireReader (lib/torrent/wire/wire.ts)'
          console.log(
            `${name.padEnd(34)}${`${kib} KiB`.padStart(8)}${median(runs.map((x) => x.mbps))
              .toFixed(0)
              .padStart(9)}${median(runs.map((x) => x.cpu))
              .toFixed(2)
              .padStart(17)}`,
          )
        }
      }
    }
  } finally {
    for (const dir of cleanup) rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv.includes('--child')) {
  process.once('message', (m) => {
    child(m as ChildMsg).catch((err) => {
      console.error(err)
      process.exit(1)
    })
  })
} else {
  mkdirSync(tmpdir(), { recursive: true })
  main().catch((err) => {
    console.error(err)
    process.exitCode = 1
  })
}
