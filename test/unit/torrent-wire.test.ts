import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import t from 'tap'
import { ManualClock } from '../../lib/bandwidth/index.js'
import { silentLogger } from '../../lib/log/index.js'
import {
  BLOCK_SIZE,
  MAX_MESSAGE_LENGTH,
  MSG,
  Pipeline,
  type PipelineOptions,
  RequestQueue,
  type WireHandler,
  WireReader,
} from '../../lib/torrent/index.js'
import { BlockPool } from '../../lib/torrent/upload/block-pool.js'
import { Peer } from '../../lib/torrent/wire/peer.js'
import { HAVE_DELAY_MS } from '../../lib/torrent/wire/peer-writer.js'
import {
  encodeBare,
  encodeHandshake,
  encodeHave,
  encodePieceHeader,
  encodeTriple,
  encodeWithPayload,
} from '../../lib/torrent/wire/wire.js'

type Event = [string, ...unknown[]]

/** Records what a WireReader reports, copying views (they are only valid during the call). */
class Recorder implements WireHandler {
  readonly events: Event[] = []
  readonly views: Buffer[] = []
  onHandshake(raw: Buffer): void {
    this.events.push(['handshake', raw.toString('hex', 28, 48), raw.toString('latin1', 48, 68)])
  }
  onMessage(id: number, payload: Buffer): void {
    this.events.push(['msg', id, payload.toString('hex')])
  }
  onPiece(index: number, offset: number, block: Buffer): void {
    this.views.push(block)
    this.events.push(['piece', index, offset, Buffer.from(block).toString('hex')])
  }
  onProtocolError(why: string): void {
    this.events.push(['error', why])
  }
}

function handshake(): Buffer {
  const b = Buffer.alloc(68)
  encodeHandshake(b, 0, Buffer.alloc(20, 0xab), Buffer.from('-SA0001-abcdefghijkl'))
  return b
}

function enc(len: number, fn: (b: Buffer) => number): Buffer {
  const b = Buffer.alloc(len)
  return b.subarray(0, fn(b))
}

function piece(index: number, offset: number, block: Buffer): Buffer {
  return Buffer.concat([enc(13, (b) => encodePieceHeader(b, 0, index, offset, block.length)), block])
}

function raw(id: number, body: Buffer = Buffer.alloc(0), length = body.length + 1): Buffer {
  const h = Buffer.alloc(5)
  h.writeUInt32BE(length >>> 0, 0)
  h[4] = id
  return Buffer.concat([h, body])
}

t.test('wire reader: every message, across arbitrary chunk boundaries', async (t) => {
  const blockA = randomBytes(BLOCK_SIZE)
  const blockB = randomBytes(3 * BLOCK_SIZE + 5)
  const stream = Buffer.concat([
    handshake(),
    Buffer.alloc(4), // keep-alive: not reported
    enc(5, (b) => encodeBare(b, 0, MSG.UNCHOKE)),
    enc(9, (b) => encodeHave(b, 0, 77)),
    enc(17, (b) => encodeTriple(b, 0, MSG.REQUEST, 1, 2, 3)),
    piece(4, 0, blockA),
    enc(64, (b) => encodeWithPayload(b, 0, MSG.BITFIELD, Buffer.from([0xf0, 0x0f]))),
    enc(64, (b) => encodeWithPayload(b, 0, MSG.EXTENDED, Buffer.from('de'), 0)),
    piece(5, BLOCK_SIZE, blockB),
    enc(17, (b) => encodeTriple(b, 0, MSG.REJECT, 9, 8, 7)),
    raw(0x42, Buffer.from([1, 2, 3])), // unknown ids are passed on (and ignored by Peer)
  ])
  const expected: Event[] = [
    ['handshake', 'ab'.repeat(20), '-SA0001-abcdefghijkl'],
    ['msg', MSG.UNCHOKE, ''],
    ['msg', MSG.HAVE, '0000004d'],
    ['msg', MSG.REQUEST, '000000010000000200000003'],
    ['piece', 4, 0, blockA.toString('hex')],
    ['msg', MSG.BITFIELD, 'f00f'],
    ['msg', MSG.EXTENDED, '006465'],
    ['piece', 5, BLOCK_SIZE, blockB.toString('hex')],
    ['msg', MSG.REJECT, '000000090000000800000007'],
    ['msg', 0x42, '010203'],
  ]
  for (const size of [1, 3, 7, 13, 64, 1000, 20_000, stream.length]) {
    const rec = new Recorder()
    const reader = new WireReader(rec)
    for (let i = 0; i < stream.length; i += size) reader.push(stream.subarray(i, i + size))
    t.same(rec.events, expected, `${size}-byte chunks`)
  }
  // In one chunk, blocks are views of it (no copy); split ones are gathered into one buffer.
  const rec = new Recorder()
  const whole = Buffer.from(stream)
  new WireReader(rec).push(whole)
  t.equal(rec.views[0]!.buffer, whole.buffer, 'a block inside the chunk is not copied')
  const split = new Recorder()
  const r2 = new WireReader(split)
  r2.push(stream.subarray(0, 100))
  r2.push(stream.subarray(100))
  t.equal(split.views[0]!.buffer, stream.buffer, 'a block in the second chunk is a view of it')
})

t.test('wire reader: a gathered block can be adopted, and is never written again', async (t) => {
  const blocks = [randomBytes(BLOCK_SIZE), randomBytes(BLOCK_SIZE), randomBytes(BLOCK_SIZE)]
  const kept: Buffer[] = []
  const spares = [Buffer.alloc(BLOCK_SIZE, 1), Buffer.alloc(BLOCK_SIZE, 2)]
  let reader!: WireReader
  let refused = 0
  const handler: WireHandler = {
    onHandshake: () => {},
    onMessage: () => {},
    onProtocolError: (why) => t.fail(why),
    onPiece: (_index, _offset, block) => {
      const spare = spares.shift()
      if (spare !== undefined && reader.adoptBlock(block, spare)) kept.push(block)
      else {
        if (spare !== undefined) spares.unshift(spare)
        refused++
        kept.push(Buffer.from(block))
      }
    },
  }
  reader = new WireReader(handler)
  const stream = Buffer.concat([handshake(), ...blocks.map((b, i) => piece(i, 0, b))])
  // Split so that every block is gathered: chunks of 1000 bytes.
  for (let i = 0; i < stream.length; i += 1000) reader.push(stream.subarray(i, i + 1000))
  t.equal(kept.length, 3)
  t.equal(refused, 1, 'the third block is copied: no spare was left to give in exchange')
  for (let i = 0; i < 3; i++) t.ok(kept[i]!.equals(blocks[i]!), `block ${i} intact after the later ones`)
  t.not(kept[0]!.buffer, kept[1]!.buffer, 'the second block was gathered in the replacement')
  t.notOk(reader.adoptBlock(kept[0]!, Buffer.alloc(BLOCK_SIZE)), 'outside onPiece nothing is adopted')

  // A block inside one chunk is a view of the socket read: never adopted.
  let adopted = true
  const whole = new WireReader({
    ...handler,
    onPiece: (_i, _o, block) => {
      adopted = whole.adoptBlock(block, Buffer.alloc(BLOCK_SIZE))
    },
  })
  whole.push(Buffer.concat([handshake(), piece(0, 0, blocks[0]!)]))
  t.notOk(adopted, 'a view of a chunk is not adopted')
})

t.test('wire reader: rejects oversized and malformed frames before buffering them', async (t) => {
  const hs = handshake()
  const cases: Array<[string, Buffer]> = [
    ['not a handshake', Buffer.from('GET / HTTP/1.1\r\n\r\n')],
    ['wrong protocol string', Buffer.concat([Buffer.from([19]), Buffer.alloc(67, 0x41)])],
    ['giant length', Buffer.concat([hs, Buffer.from([0x7f, 0xff, 0xff, 0xff])])],
    ['top bit set', Buffer.concat([hs, Buffer.from([0xff, 0xff, 0xff, 0xff])])],
    ['just over the limit', Buffer.concat([hs, raw(7, Buffer.alloc(0), MAX_MESSAGE_LENGTH + 1)])],
    ['short have', Buffer.concat([hs, raw(4)])],
    ['long choke', Buffer.concat([hs, raw(0, Buffer.alloc(1))])],
    ['short request', Buffer.concat([hs, raw(6, Buffer.alloc(8))])],
    ['empty piece', Buffer.concat([hs, raw(7, Buffer.alloc(8))])],
    ['short extended', Buffer.concat([hs, raw(20)])],
    ['long reject', Buffer.concat([hs, raw(0x10, Buffer.alloc(13))])],
  ]
  for (const [name, bytes] of cases) {
    const rec = new Recorder()
    const reader = new WireReader(rec)
    for (let i = 0; i < bytes.length; i += 3) reader.push(bytes.subarray(i, i + 3))
    const errors = rec.events.filter((e) => e[0] === 'error')
    t.equal(errors.length, 1, `${name}: ${errors[0]?.[1]}`)
    t.equal(rec.events.at(-1)?.[0], 'error', `${name}: nothing reported after the error`)
  }
  const rec = new Recorder()
  new WireReader(rec).push(Buffer.concat([hs, raw(7, Buffer.alloc(8), MAX_MESSAGE_LENGTH)]))
  t.notOk(
    rec.events.some((e) => e[0] === 'error'),
    'the limit itself is fine (and is waited for, not buffered up front)',
  )
})

t.test('wire reader: stop() from a handler drops the rest of the chunk', async (t) => {
  const events: number[] = []
  let reader: WireReader
  const handler: WireHandler = {
    onHandshake: () => {},
    onMessage: (id) => {
      events.push(id)
      if (id === MSG.CHOKE) reader.stop()
    },
    onPiece: () => {},
    onProtocolError: () => {},
  }
  reader = new WireReader(handler)
  reader.push(Buffer.concat([handshake(), raw(MSG.UNCHOKE), raw(MSG.CHOKE), raw(MSG.INTERESTED)]))
  reader.push(raw(MSG.INTERESTED))
  t.same(events, [MSG.UNCHOKE, MSG.CHOKE])
})

t.test('request queue: FIFO without allocation, cancels leave holes, bounded', async (t) => {
  const q = new RequestQueue(3)
  t.ok(q.push(1, 0, 100))
  t.ok(q.push(2, 16, 200))
  t.ok(q.push(3, 32, 300))
  t.notOk(q.push(4, 0, 1), 'full')
  t.ok(q.full)
  t.ok(q.remove(2, 16, 200), 'a queued request is cancelled')
  t.notOk(q.remove(2, 16, 200))
  t.notOk(q.remove(3, 32, 301), 'the triple must match exactly')
  t.equal(q.size, 2)
  t.ok(q.shift())
  t.same([q.index, q.offset, q.length], [1, 0, 100])
  t.ok(q.push(5, 48, 500), 'wraps around')
  t.ok(q.shift())
  t.same([q.index, q.offset, q.length], [3, 32, 300], 'the hole is skipped')
  t.ok(q.shift())
  t.same([q.index, q.offset, q.length], [5, 48, 500])
  t.notOk(q.shift())
  t.equal(q.size, 0)
  q.push(6, 0, 1)
  q.clear()
  t.notOk(q.shift(), 'clear empties it')
})

t.test('pipeline: in flight follows rate × (rtt + queue), bounded', async (t) => {
  const o: PipelineOptions = {
    minDepth: 2,
    maxDepth: 256,
    maxBytes: 16 << 20,
    initialBytes: 1 << 20,
    queueMs: 100,
  }
  const block = 128 << 10
  const p = new Pipeline()
  t.equal(p.depth(block, o, 250), 9, 'before any measurement: initialBytes worth (+1)')
  // 8 MiB/s: one 128 KiB block every 15.6 ms, each 20 ms after its request.
  let now = 1000
  for (let i = 0; i < 64; i++) {
    now += 15.625
    p.onBlock(block, 20, now)
  }
  t.ok(
    Math.abs(p.rate - 8 * 2 ** 20) / (8 * 2 ** 20) < 0.05,
    `rate measured (${(p.rate / 2 ** 20).toFixed(2)} MiB/s)`,
  )
  t.equal(p.rttMin, 20)
  // 8 MiB/s × 120 ms = 0.96 MiB = 7.7 blocks → 8, +1
  t.equal(p.depth(block, o, 250), 9)
  t.equal(p.depth(16 << 10, o, 250), 63, 'the same bytes in 16 KiB requests')
  t.equal(p.depth(16 << 10, o, 40), 40, "never more than the peer's reqq")
  // 1 GB/s on loopback: capped by maxBytes.
  for (let i = 0; i < 2000; i++) {
    now += 0.125
    p.onBlock(block, 1, now)
  }
  t.equal(p.depth(block, o, 250), 128, '16 MiB / 128 KiB')
  // A slow peer still gets the minimum.
  const slow = new Pipeline()
  for (let i = 0; i < 20; i++) slow.onBlock(16 << 10, 1, 1000 + i * 1000)
  t.equal(slow.depth(block, o, 250), 2, 'minDepth')
})

/** Just enough of a net.Socket for a Peer: records writes, never connects unless told to. */
class FakeSocket extends EventEmitter {
  connecting = true
  destroyed = false
  writableLength = 0
  writableNeedDrain = false
  readonly written: Buffer[] = []
  /** Write callbacks not yet called: complete() calls the oldest, as a socket would. */
  readonly pendingCallbacks: Array<() => void> = []
  setNoDelay(): void {}
  cork(): void {}
  uncork(): void {}
  write(b: Buffer, cb?: () => void): boolean {
    this.written.push(b) // a view: the peer never rewrites bytes it handed over
    if (cb) this.pendingCallbacks.push(cb)
    return true
  }
  complete(): void {
    this.pendingCallbacks.shift()?.()
  }
  destroy(): void {
    if (this.destroyed) return
    this.destroyed = true
    this.emit('close')
  }
}

function fakePeerConnection(
  direction: 'in' | 'out',
  timeouts = { connectMs: 50, handshakeMs: 50, firstMessageMs: 50 },
) {
  // Timers run only when the test advances this clock.
  const clock = new ManualClock()
  const socket = new FakeSocket()
  if (direction === 'in') socket.connecting = false
  const handled: string[] = []
  const peer = new Peer({
    socket: socket as unknown as Socket,
    direction,
    ip: '127.0.0.1',
    port: 1,
    timeouts,
    blockSize: 128 << 10,
    logger: silentLogger(),
    handler: {
      onHandshake: () => {
        handled.push('handshake')
        return true
      },
      onClose: () => handled.push('close'),
    },
    clock,
  })
  return { socket, peer, handled, clock }
}

t.test('peer: connect, handshake and first-message timeouts, one phase at a time', async (t) => {
  const a = fakePeerConnection('out')
  a.clock.advance(120)
  t.equal(a.peer.closeReason, 'connect timeout', 'a dial that never connects')

  const b = fakePeerConnection('out', { connectMs: 50, handshakeMs: 150, firstMessageMs: 150 })
  b.clock.advance(20)
  b.socket.connecting = false
  b.socket.emit('connect')
  b.clock.advance(80)
  t.notOk(b.peer.closed, 'connected in time: now the handshake clock runs')
  b.clock.advance(150)
  t.equal(b.peer.closeReason, 'handshake timeout')

  const c = fakePeerConnection('in', { connectMs: 50, handshakeMs: 100, firstMessageMs: 100 })
  c.socket.emit('data', handshake())
  t.same(c.handled, ['handshake'])
  c.clock.advance(150)
  t.equal(c.peer.closeReason, 'first message timeout', 'handshake, then silence')

  const d = fakePeerConnection('in', { connectMs: 50, handshakeMs: 100, firstMessageMs: 100 })
  d.peer.receive(Buffer.concat([handshake(), raw(MSG.INTERESTED)])) // e.g. bytes an MSE layer read
  d.clock.advance(150)
  t.notOk(d.peer.closed, 'a peer that spoke is past every phase')
  d.peer.close('done')
  t.same(d.handled, ['handshake', 'close'])
})

t.test('peer: small messages are batched into one write per tick; a piece is header + block', async (t) => {
  const { socket, peer } = fakePeerConnection('in')
  peer.sendHave(1)
  peer.sendRequest(1, 2, 3)
  peer.sendCancel(1, 2, 3)
  t.equal(socket.written.length, 0, 'nothing written synchronously')
  await new Promise((r) => process.nextTick(r))
  t.equal(socket.written.length, 1, 'one write for three messages')
  t.equal(socket.written[0]!.length, 9 + 17 + 17)
  const block = randomBytes(100)
  peer.sendHave(2)
  peer.sendPiece(3, 16, block)
  t.equal(socket.written.length, 3, 'a piece flushes what was queued before it, then the block')
  t.equal(socket.written[1]!.length, 9 + 13, 'the have and the piece header, in order')
  t.equal(socket.written[2], block, 'the block itself is not copied')
  t.equal(peer.uploaded, 100)
  peer.close('done')
})

t.test('peer: haves wait for other traffic, or go out in one batch within HAVE_DELAY_MS', async (t) => {
  const slow = { connectMs: 5_000, handshakeMs: 5_000, firstMessageMs: 5_000 }
  const { socket, peer, clock } = fakePeerConnection('in', slow)
  peer.sendHave(1)
  peer.sendHave(2)
  await new Promise((r) => process.nextTick(r))
  t.equal(socket.written.length, 0, 'haves alone do not cost a write per tick')
  clock.advance(HAVE_DELAY_MS)
  t.equal(socket.written.length, 1, 'one write for the batch')
  t.equal(socket.written[0]!.length, 2 * 9)
  peer.sendHave(3)
  peer.sendRequest(0, 0, 16)
  await new Promise((r) => process.nextTick(r))
  t.equal(socket.written.length, 2, 'a request takes the waiting have along')
  t.equal(socket.written[1]!.length, 9 + 17)
  clock.advance(HAVE_DELAY_MS)
  t.equal(socket.written.length, 2, 'and the timer finds nothing left to send')
  peer.sendHave(4)
  peer.close('done')
  clock.advance(HAVE_DELAY_MS)
  t.equal(socket.written.length, 2, 'nothing is written after close')
})

t.test('peer: a lent block buffer goes back to its pool when its write completes, in order', async (t) => {
  const { socket, peer } = fakePeerConnection('in')
  const pool = new BlockPool(64, 8)
  const first = pool.take(64)
  const second = pool.take(64)
  peer.sendPiece(0, 0, first.subarray(0, 10), first, pool)
  peer.sendPiece(0, 10, second.subarray(0, 10), second, pool)
  t.equal(pool.idle, 0, 'both still lent while the socket holds them')
  socket.complete()
  t.equal(pool.idle, 1, 'the first write completed: one back')
  t.equal(pool.take(64), first, 'and it is the first buffer')
  socket.complete()
  t.equal(pool.take(64), second)
  peer.close('done')
  const late = pool.take(64)
  peer.sendPiece(1, 0, late, late, pool)
  t.equal(pool.take(64), late, 'a piece for a closed peer gives its buffer straight back')
  t.equal(pool.take(200).length, 200, 'a block longer than the pool size gets its own buffer')
  pool.give(Buffer.alloc(200))
  t.equal(pool.idle, 0, 'and it is not pooled')
})
