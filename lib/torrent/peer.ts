/**
 * One TCP connection to a peer: socket, WireGuard and bittorrent-protocol Wire glued together,
 * with the handshake timeout and the per-peer state the torrent's scheduler keeps.
 *
 * Every listener is a method bound once per connection (never a closure per message), and
 * every listener is wrapped so that a throw inside our code closes this connection instead of
 * escaping into streamx's tick and crashing the process.
 */
import type { Socket } from 'node:net'
import Wire from 'bittorrent-protocol'
import type { Logger } from '../log/index.js'
import type { Bitfield } from './bitfield.js'
import type { PieceBuffer } from './picker.js'
import { classifyPeerId, type PeerClass } from './types.js'
import { WireGuard } from './wire-guard.js'

/** What a peer reports to the torrent it is attached to. */
export interface PeerOwner {
  onBitfield(peer: Peer, bits: Uint8Array): void
  onHaveAll(peer: Peer): void
  onHaveNone(peer: Peer): void
  onHave(peer: Peer, index: number): void
  onChoke(peer: Peer): void
  onUnchoke(peer: Peer): void
  onInterested(peer: Peer): void
  onUninterested(peer: Peer): void
  onRequest(peer: Peer, index: number, offset: number, length: number, respond: Respond): void
  onPiece(peer: Peer, index: number, offset: number, block: Uint8Array): void
  onReject(peer: Peer, index: number, offset: number, length: number): void
  onClose(peer: Peer): void
}

const MAX_WRITE_BUFFER = 16 << 20

export type Respond = (err: Error | null, block?: Uint8Array) => void

export interface PeerHandshakeHandler {
  /** Decide on a received handshake; false closes the connection. */
  onHandshake(peer: Peer, infoHashHex: string, peerId: Buffer): boolean
  onClose(peer: Peer): void
}

export interface PeerInit {
  socket: Socket
  direction: 'in' | 'out'
  /** For outgoing connections the address we dialled (the peer's listen address). */
  ip: string
  port: number
  handshakeTimeoutMs: number
  logger: Logger
  handler: PeerHandshakeHandler
}

export class Peer {
  readonly socket: Socket
  readonly wire: Wire
  readonly direction: 'in' | 'out'
  readonly ip: string
  readonly port: number
  /** The engine's logger until attached, then the torrent's (which carries the infohash). */
  log: Logger
  private readonly guard = new WireGuard()
  private readonly handler: PeerHandshakeHandler
  private owner: PeerOwner | undefined
  private handshakeTimer: NodeJS.Timeout | undefined
  closed = false
  closeReason = ''

  // Known after the handshake.
  id: Buffer = Buffer.alloc(0)
  idHex = ''
  cls: PeerClass = 'agent'

  // Scheduler state, owned by the torrent.
  bits: Bitfield | undefined
  /** Pieces the peer has that we still lack: interest without a scan. */
  interesting = 0
  /** Block key (piece * blocksPerPiece + block) → when it was requested, oldest first. */
  readonly outstanding = new Map<number, number>()
  /**
   * Block keys of requests to this peer that a timeout or choke withdrew (the latest batch
   * only): a block the peer still sends for one of them is late, not unrequested.
   */
  readonly withdrawn = new Set<number>()
  /** Pieces assigned to this peer (PieceBuffer.owner === this). */
  readonly owned: Array<PieceBuffer<Peer>> = []
  lastRecvAt = Date.now()
  lastSendAt = Date.now()
  snubbedUntil = 0
  /** Corrupt pieces this peer contributed to. */
  strikes = 0
  unchokedByUs = false
  /** Incoming requests waiting for storage reads, served one at a time. */
  readonly serveQueue: Array<{ index: number; offset: number; length: number; respond: Respond }> = []
  serving = false
  private drainWaiter: (() => void) | undefined
  private corked = false

  constructor(init: PeerInit) {
    this.socket = init.socket
    this.direction = init.direction
    this.ip = init.ip
    this.port = init.port
    this.handler = init.handler
    this.log = init.logger
    this.wire = new Wire(init.direction === 'in' ? 'tcpIncoming' : 'tcpOutgoing')
    this.socket.setNoDelay(true)
    this.socket.on('data', this.safe(this.onSocketData))
    this.socket.on('error', this.onSocketError)
    this.socket.on('close', this.onSocketClose)
    this.socket.on('drain', this.onDrain)
    this.wire.on('data', this.safe(this.onWireData))
    this.wire.on('error', this.onSocketError)
    this.wire.on('finish', this.onWireFinish)
    this.wire.on('handshake', this.safe(this.onWireHandshake))
    this.handshakeTimer = setTimeout(this.onHandshakeTimeout, init.handshakeTimeoutMs)
    this.handshakeTimer.unref()
  }

  get addr(): string {
    return `${this.ip}:${this.port}`
  }

  get handshaken(): boolean {
    return this.idHex !== ''
  }

  sendHandshake(infoHash: Buffer, ourPeerId: Buffer): void {
    // Advertise how many requests we queue, so stock clients do not overrun maxPeerRequests.
    this.wire.extendedHandshake = { reqq: 250, v: 'Shoal/0.1' }
    this.wire.handshake(infoHash, ourPeerId, { dht: false, fast: true })
  }

  /** Hands the connection to a torrent: from now on messages go to `owner`. */
  attach(owner: PeerOwner): void {
    this.owner = owner
    const w = this.wire
    w.on('bitfield', this.safe(this.onWireBitfield))
    w.on('have-all', this.safe(this.onWireHaveAll))
    w.on('have-none', this.safe(this.onWireHaveNone))
    w.on('have', this.safe(this.onWireHave))
    w.on('choke', this.safe(this.onWireChoke))
    w.on('unchoke', this.safe(this.onWireUnchoke))
    w.on('interested', this.safe(this.onWireInterested))
    w.on('uninterested', this.safe(this.onWireUninterested))
    w.on('request', this.safe(this.onWireRequest))
    w.on('piece', this.safe(this.onWirePiece))
    w.on('reject', this.safe(this.onWireReject))
  }

  close(reason: string): void {
    if (this.closed) return
    this.closed = true
    this.closeReason = reason
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer)
    this.socket.destroy()
    this.wire.destroy()
    this.serveQueue.length = 0
    this.onDrain()
    this.log.debug({ peer: this.addr, peerId: this.idHex || undefined, reason }, 'peer disconnected')
    try {
      this.owner?.onClose(this)
    } finally {
      this.handler.onClose(this)
    }
  }

  /** Resolves when the socket's write buffer drained (or the peer closed). */
  waitDrain(): Promise<void> {
    if (this.closed || !this.socket.writableNeedDrain) return Promise.resolve()
    return new Promise((resolve) => {
      this.drainWaiter = resolve
    })
  }

  private safe<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
    return (...args: A) => {
      if (this.closed) return
      try {
        fn.apply(this, args)
      } catch (err) {
        this.log.warn({ err, peer: this.addr }, 'error handling peer message; disconnecting')
        this.close('internal error')
      }
    }
  }

  private onSocketData(chunk: Buffer): void {
    this.lastRecvAt = Date.now()
    const bad = this.guard.check(chunk)
    if (bad !== undefined) {
      this.log.debug({ peer: this.addr, why: bad }, 'protocol violation')
      this.close(bad)
      return
    }
    // Wire parses synchronously on its next tick and keeps at most one partial message, so
    // the socket is not paused here: pausing per chunk costs more than the bounded backlog.
    this.wire.write(chunk)
  }

  private onWireData(chunk: Uint8Array): void {
    this.lastSendAt = Date.now()
    // Uploads wait for 'drain', so only a peer that stops reading while it keeps sending
    // (e.g. requests we must reject) can grow this buffer.
    if (this.socket.writableLength > MAX_WRITE_BUFFER) {
      this.close('peer is not reading')
      return
    }
    // Wire emits a piece header and its block (and each request) as separate chunks; corking
    // until the end of the tick turns them into one writev instead of a syscall per chunk.
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      process.nextTick(this.uncork)
    }
    this.socket.write(chunk)
  }

  private readonly uncork = (): void => {
    this.corked = false
    this.socket.uncork()
  }

  private readonly onSocketError = (err: Error): void => {
    this.close(`socket error: ${(err as NodeJS.ErrnoException).code ?? err.message}`)
  }

  private readonly onSocketClose = (): void => {
    this.close('socket closed')
  }

  private readonly onWireFinish = (): void => {
    this.close('wire ended')
  }

  private readonly onDrain = (): void => {
    const w = this.drainWaiter
    this.drainWaiter = undefined
    w?.()
  }

  private readonly onHandshakeTimeout = (): void => {
    if (!this.handshaken) this.close('handshake timeout')
  }

  private onWireHandshake(infoHashHex: string, _peerIdHex: string): void {
    const id = Buffer.from(this.wire.peerIdBuffer ?? [])
    if (id.length !== 20) {
      this.close('bad peer id')
      return
    }
    this.id = id
    this.idHex = id.toString('hex')
    this.cls = classifyPeerId(id)
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer)
    this.handshakeTimer = undefined
    if (!this.handler.onHandshake(this, infoHashHex, id)) this.close('handshake refused')
  }

  private onWireBitfield(bits: { buffer: Uint8Array }): void {
    this.owner?.onBitfield(this, bits.buffer)
  }
  private onWireHaveAll(): void {
    this.owner?.onHaveAll(this)
  }
  private onWireHaveNone(): void {
    this.owner?.onHaveNone(this)
  }
  private onWireHave(index: number): void {
    this.owner?.onHave(this, index)
  }
  private onWireChoke(): void {
    this.owner?.onChoke(this)
  }
  private onWireUnchoke(): void {
    this.owner?.onUnchoke(this)
  }
  private onWireInterested(): void {
    this.owner?.onInterested(this)
  }
  private onWireUninterested(): void {
    this.owner?.onUninterested(this)
  }
  private onWireRequest(index: number, offset: number, length: number, respond: Respond): void {
    this.owner?.onRequest(this, index, offset, length, respond)
  }
  private onWirePiece(index: number, offset: number, block: Uint8Array): void {
    this.owner?.onPiece(this, index, offset, block)
  }
  private onWireReject(index: number, offset: number, length: number): void {
    this.owner?.onReject(this, index, offset, length)
  }
}
