/**
 * `npm run bench:tracker`: announces per second and latency (p50/p99) of one tracker process,
 * with the memory store and with the Redis store (a redis-server spawned on a unix socket), in
 * one run. 10,000 peers over 1,000 infohashes (10 per swarm) first announce `started`, then
 * re-announce round-robin; only the re-announces are measured. HTTP over loopback, keep-alive,
 * several concurrent clients (one undici pool). The tracker runs in its own process so the load
 * generator does not share its event loop.
 *
 *   node --import tsx test/bench/tracker.ts [--peers 10000] [--swarms 1000] [--announces 100000]
 *     [--clients 32] [--stores memory,redis]
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { validateConfig } from '../../lib/config/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { encodeBytes } from '../../lib/tracker/client/index.js'
import { TrackerConfigSchema } from '../../lib/tracker/config.js'
import { startTracker } from '../../lib/tracker/server/index.js'
import { startTestRedis } from '../helpers/redis.js'

const HERE = fileURLToPath(import.meta.url)

/** The child: a tracker on 127.0.0.1:0 with the given peerStore; prints its URL, runs until killed. */
async function serve(peerStore: unknown): Promise<void> {
  const config = validateConfig(TrackerConfigSchema, {
    server: { host: '127.0.0.1', port: 0 },
    // Every simulated agent is 127.0.0.1: one rate-limit bucket for all of them.
    rateLimits: { announce: { perSecond: 0 } },
    peerStore,
    peerTtlSeconds: 600,
    announceInterval: 60,
  })
  const tracker = await startTracker(config, { logger: silentLogger() })
  process.stdout.write(`${tracker.url}\n`)
  process.on('SIGTERM', () => void tracker.stop().then(() => process.exit(0)))
}

async function startChild(peerStore: unknown): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [
      ...(process.env.TRACKER_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
      '--import',
      'tsx',
      HERE,
      '--serve',
      JSON.stringify(peerStore),
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  let out = ''
  child.stdout?.setEncoding('utf8')
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (d: string) => {
      out += d
      const nl = out.indexOf('\n')
      if (nl >= 0) resolve(out.slice(0, nl).trim())
    })
    child.once('exit', (code) => reject(new Error(`tracker process exited with ${code}`)))
  })
  return { url, child }
}

/**
 * A minimal HTTP/1.1 keep-alive client, one request at a time per connection: a general client
 * (undici) costs more CPU per request than the tracker does, and both share the machine here.
 */
class KeepAliveConnection {
  private buf: Buffer = Buffer.alloc(0)
  private waiting: ((r: { status: number; body: Buffer }) => void) | undefined

  private constructor(
    private readonly socket: Socket,
    private readonly host: string,
  ) {
    socket.setNoDelay(true)
    socket.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d
      this.parse()
    })
  }

  static open(host: string, port: number): Promise<KeepAliveConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, host, () => resolve(new KeepAliveConnection(socket, `${host}:${port}`)))
      socket.once('error', reject)
    })
  }

  get(path: string): Promise<{ status: number; body: Buffer }> {
    return new Promise((resolve) => {
      this.waiting = resolve
      this.socket.write(`GET ${path} HTTP/1.1\r\nhost: ${this.host}\r\n\r\n`)
    })
  }

  close(): void {
    this.socket.destroy()
  }

  private parse(): void {
    const end = this.buf.indexOf('\r\n\r\n')
    if (end < 0) return
    const head = this.buf.subarray(0, end).toString('latin1')
    const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0)
    if (this.buf.length < end + 4 + length) return
    const body = this.buf.subarray(end + 4, end + 4 + length)
    this.buf = this.buf.subarray(end + 4 + length)
    const done = this.waiting
    this.waiting = undefined
    done?.({ status: Number(head.slice(9, 12)), body })
  }
}

interface Figures {
  store: string
  announces: number
  seconds: number
  perSecond: number
  p50ms: number
  p99ms: number
  failures: number
  /** CPU seconds the tracker process spent per second of the measured phase (1 = one core busy). */
  trackerCores: number
}

/** utime + stime of a process, seconds (Linux /proc; 0 elsewhere). */
function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return 0
  }
}

async function load(
  store: string,
  url: string,
  opts: { peers: number; swarms: number; announces: number; clients: number },
  pid: number | undefined,
): Promise<Figures> {
  const queries: string[] = []
  for (let i = 0; i < opts.peers; i++) {
    const ih = Buffer.alloc(20)
    ih.writeUInt32BE((i % opts.swarms) + 1, 16)
    const id = Buffer.from(`-SB0001-${String(i).padStart(12, '0')}`)
    queries.push(
      `/announce?info_hash=${encodeBytes(ih)}&peer_id=${encodeBytes(id)}&port=${10_000 + (i % 50_000)}` +
        `&uploaded=0&downloaded=0&left=${i % 10 === 0 ? 0 : 1000}&compact=1&numwant=50`,
    )
  }
  let failures = 0
  const { hostname, port } = new URL(url)
  const conns = await Promise.all(
    Array.from({ length: opts.clients }, () => KeepAliveConnection.open(hostname, Number(port))),
  )
  const one = async (conn: KeepAliveConnection, path: string): Promise<number> => {
    const t0 = process.hrtime.bigint()
    const { status, body } = await conn.get(path)
    if (status !== 200 || body.includes('failure reason')) failures++
    return Number(process.hrtime.bigint() - t0) / 1e6
  }
  const run = async (total: number, offset: number, event: string, latencies?: number[]) => {
    let next = 0
    await Promise.all(
      conns.map(async (conn) => {
        for (;;) {
          const n = next++
          if (n >= total) return
          const ms = await one(conn, `${queries[(n + offset) % queries.length]}${event}`)
          latencies?.push(ms)
        }
      }),
    )
  }
  await run(opts.peers, 0, '&event=started') // every peer in its swarm; not measured
  failures = 0
  const latencies: number[] = []
  const cpu0 = cpuSeconds(pid)
  const t0 = process.hrtime.bigint()
  await run(opts.announces, 7, '', latencies)
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const trackerCores = (cpuSeconds(pid) - cpu0) / seconds
  for (const c of conns) c.close()
  latencies.sort((a, b) => a - b)
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0
  return {
    store,
    announces: opts.announces,
    seconds,
    perSecond: opts.announces / seconds,
    p50ms: pct(0.5),
    p99ms: pct(0.99),
    failures,
    trackerCores,
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      serve: { type: 'string' },
      peers: { type: 'string', default: '10000' },
      swarms: { type: 'string', default: '1000' },
      announces: { type: 'string', default: '100000' },
      clients: { type: 'string', default: '32' },
      stores: { type: 'string', default: 'memory,redis' },
    },
  })
  if (values.serve !== undefined) return serve(JSON.parse(values.serve))
  const opts = {
    peers: Number(values.peers),
    swarms: Number(values.swarms),
    announces: Number(values.announces),
    clients: Number(values.clients),
  }
  const teardowns: Array<() => unknown> = []
  const results: Figures[] = []
  try {
    for (const store of values.stores.split(',')) {
      let peerStore: unknown
      if (store === 'memory') peerStore = { type: 'memory' }
      else if (store === 'redis') {
        const redis = await startTestRedis({ teardown: (fn) => teardowns.push(fn) })
        peerStore = { type: 'redis', redis: { url: redis.url, keyPrefix: 'bench:' } }
      } else throw new Error(`unknown store ${store}; memory or redis`)
      const { url, child } = await startChild(peerStore)
      process.stderr.write(
        `${store}: tracker at ${url}, ${opts.peers} peers over ${opts.swarms} infohashes\n`,
      )
      try {
        results.push(await load(store, url, opts, child.pid))
      } finally {
        const exited = once(child, 'exit')
        child.kill('SIGTERM')
        await exited
      }
    }
  } finally {
    for (const fn of teardowns.reverse()) await fn()
  }
  console.log(
    `tracker benchmark: ${opts.peers} peers, ${opts.swarms} infohashes, ${opts.announces} measured announces, ` +
      `${opts.clients} concurrent keep-alive clients, numwant 50; node ${process.version}, ${cpus().length} cores`,
  )
  console.log('| store | announces/s | p50 ms | p99 ms | failures | tracker CPU (cores) |')
  console.log('|---|---|---|---|---|---|')
  for (const r of results) {
    console.log(
      `| ${r.store} | ${Math.round(r.perSecond)} | ${r.p50ms.toFixed(2)} | ${r.p99ms.toFixed(2)} | ${r.failures} | ${r.trackerCores.toFixed(2)} |`,
    )
  }
}

await main()
