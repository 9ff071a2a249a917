/**
 * The limiters on real TCP sockets (loopback, real time): an egress-capped sender and an
 * ingress-capped receiver, both at 4 MiB/s, run side by side for ~2 s. Bytes through over the
 * run, less the initial burst, must be within 5 % of cap × time. Speed targets live in the benchmark; this only
 * checks that the mechanism holds a real socket to its cap.
 */
import { once } from 'node:events'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import t from 'tap'
import { HostBandwidth, PauseGate } from '../../lib/bandwidth/index.js'

const MiB = 1024 * 1024
const CAP = 4 * MiB
const BLOCK = 16 * 1024 + 13 // a piece message: 16 KiB block and its header
const RUN_MS = 2000
/**
 * A generous bucket: a busy machine can stall this process for a while, and the tokens saved
 * meanwhile keep the average. The measurement counts from the first byte, so the burst is
 * subtracted once, exactly.
 */
const BURST = 1 * MiB

async function pair(): Promise<{ server: Server; client: Socket; accepted: Socket }> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  const client = createConnection({ port, host: '127.0.0.1' })
  const [connection] = await Promise.all([once(server, 'connection'), once(client, 'connect')])
  const accepted = connection[0] as Socket
  return { server, client, accepted }
}

function counter(sock: Socket): { bytes: number } {
  const c = { bytes: 0 }
  sock.on('data', (chunk: Buffer) => {
    c.bytes += chunk.length
  })
  return c
}

t.test('egress and ingress caps hold real sockets to 4 MiB/s within 5 %', async (t) => {
  const bw = new HostBandwidth({ egressBytesPerSec: CAP, ingressBytesPerSec: CAP, burstBytes: BURST })
  const out = await pair() // capped sender: out.client writes, out.accepted reads
  const inn = await pair() // capped reader: inn.accepted reads, inn.client writes flat out
  t.teardown(() => {
    bw.close()
    for (const p of [out, inn]) {
      p.client.destroy()
      p.accepted.destroy()
      p.server.close()
    }
  })
  const block = Buffer.alloc(BLOCK, 7)
  let stopped = false

  // Egress: ask the limiter before each message, wait for drain when the socket is full.
  const sender = out.client
  let sent = 0
  const flow = bw.egress.flow('torrent-a', () => {
    if (stopped) return
    sent += BLOCK
    if (sender.write(block)) sendLoop()
    else sender.once('drain', sendLoop)
  })
  function sendLoop(): void {
    while (!stopped && flow.request(BLOCK)) {
      sent += BLOCK
      if (!sender.write(block)) {
        sender.once('drain', sendLoop)
        return
      }
    }
  }
  const egressIn = counter(out.accepted)

  // Ingress: the limiter pauses the reading socket; the writer pushes as fast as TCP lets it.
  const ingressFlow = bw.ingress.register(inn.accepted, 'torrent-b')
  const ingressIn = counter(inn.accepted)
  const writer = inn.client
  function floodLoop(): void {
    while (!stopped && writer.write(block)) {}
    if (!stopped) writer.once('drain', floodLoop)
  }

  const stalls = monitorEventLoopDelay({ resolution: 10 })
  stalls.enable()
  const t0 = performance.now()
  sendLoop()
  floodLoop()
  await new Promise((r) => setTimeout(r, RUN_MS))
  stopped = true
  stalls.disable()
  const elapsed = (performance.now() - t0) / 1000
  const read = ingressIn.bytes
  flow.close()
  ingressFlow.close()
  // Everything the sender was allowed to write must have crossed the socket.
  while (egressIn.bytes < sent) await new Promise((r) => setTimeout(r, 10))

  // A token bucket lets burst + cap × elapsed through (give or take one message or read).
  const e = (egressIn.bytes - BURST) / elapsed
  const i = (read - BURST) / elapsed
  const stallMs = stalls.max / 1e6
  const what = (x: number) => `${(x / MiB).toFixed(3)} MiB/s over ${elapsed.toFixed(2)} s (cap 4)`
  t.ok(e / CAP < 1.05, `egress ${what(e)}: not over`)
  t.ok(i / CAP < 1.05, `ingress ${what(i)}: not over`)
  // The lower bounds hold only while this process gets the CPU: one stall longer than the bucket
  // loses tokens, and so do many shorter ones when the machine is overloaded (p99 of the loop's
  // delay). Ingress also waits on the kernel to deliver after each resume, hence its lower bound.
  const p99Ms = stalls.percentile(99) / 1e6
  if (stallMs < (BURST / CAP) * 1000 && p99Ms < 20) {
    t.ok(e / CAP > 0.95, 'egress reaches the cap')
    t.ok(i / CAP > 0.9, 'ingress reaches the cap')
  } else {
    // Tokens are only spent while the process runs: a stall longer than the bucket loses them.
    t.comment(
      `event loop stalled up to ${stallMs.toFixed(0)} ms, p99 ${p99Ms.toFixed(0)} ms (machine overloaded): lower bound not checked`,
    )
  }
  t.ok(
    bw.egress.throttledSeconds > 1.5,
    `egress was the bottleneck (${bw.egress.throttledSeconds.toFixed(2)} s)`,
  )
  t.ok(bw.ingress.throttledSeconds > 1.5, `ingress too (${bw.ingress.throttledSeconds.toFixed(2)} s)`)
})

t.test('PauseGate: the source reads only while no limiter holds it paused', async (t) => {
  const calls: string[] = []
  const gate = new PauseGate({ pause: () => calls.push('pause'), resume: () => calls.push('resume') })
  const host = gate.handle()
  const job = gate.handle()
  host.pause()
  job.pause()
  host.pause() // repeated: still one hold
  host.resume()
  t.same(calls, ['pause'], 'one limiter resuming does not let the other one’s unpaid bytes in')
  job.resume()
  t.same(calls, ['pause', 'resume'], 'resumed once neither holds it')
  job.resume()
  t.same(calls, ['pause', 'resume'], 'a resume without a pause changes nothing')
})
