/**
 * One TCP connection to a peer: the socket, our wire reader (wire.ts) and writer, the per-phase
 * timeouts (connect, handshake, first message), what the handshakes said (id, class, BEP 6,
 * BEP 10: block size, reqq, listen port), byte counters and the bandwidth flows. Peer writes
 * all of these itself.
 *
 * What a torrent keeps per peer lives in records its subsystems own: `down` (PeerDownload,
 * download/peer-download.ts: the Downloader and Scheduler) and `up` (PeerUpload, upload/peer-upload.ts: the
 * Uploader and ServeOnce), created when the torrent takes the connection. Other code reads
 * them through read-only views.
 *
 * The two places the host's bandwidth caps gate (see useBandwidth): every byte read from the
 * socket is counted in onSocketData(), and every piece block written to it is paid for by
 * its one caller, Uploader.serve(), before sendPiece().
 *
 * Writing is PeerWriter's (peer-writer.ts), which Peer extends.
 */
import type { Socket } from 'node:net'
import {
  type Clock,
  type EgressFlow,
  type HostBandwidth,
  type IngressFlow,
  type Limiter,
  PauseGate,
  systemClock,
} from '../../bandwidth/index.js'
import type { Logger } from '../../log/index.js'
import type { PeerDownloadView } from '../download/peer-download.js'
import { BLOCK_SIZE, classifyPeerId, DEFAULTS, type PeerClass } from '../types.js'
import type { PeerUploadView } from '../upload/peer-upload.js'
import { readExtendedHandshake } from './extended-handshake.js'
import { PeerWriter } from './peer-writer.js'
import { READ_BUFFER } from './read-buffer.js'
import { MSG, type WireHandler, WireReader } from './wire.js'

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
  onRequest(peer: Peer, index: number, offset: number, length: number): void
  onCancel(peer: Peer, index: number, offset: number, length: number): void
  onPiece(peer: Peer, index: number, offset: number, block: Buffer): void
  onReject(peer: Peer, index: number, offset: number, length: number): void
  onClose(peer: Peer): void
}

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
  /** Connect, handshake and first-message timeouts. */
  timeouts: { connectMs: number; handshakeMs: number; firstMessageMs: number }
  /** The block size we offer Shoal peers. */
  blockSize: number
  logger: Logger
  handler: PeerHandshakeHandler
  /** Phase timeouts, have batching and the peer's times; default the system clock. */
  clock?: Clock
}

const PHASE_CONNECT = 0
const PHASE_HANDSHAKE = 1
const PHASE_FIRST = 2
const PHASE_OPEN = 3

export class Peer extends PeerWriter implements WireHandler {
  readonly direction: 'in' | 'out'
  readonly ip: string
  readonly port: number
  /** The engine's logger until attached, then the torrent's (which carries the infohash). */
  log: Logger
  private readonly reader: WireReader
  private readonly handler: PeerHandshakeHandler
  private readonly timeouts: PeerInit['timeouts']
  private owner: PeerOwner | undefined
  private phase = PHASE_CONNECT
  private phaseTimer: unknown
  closeReason = ''

  // Known after the handshake.
  id: Buffer = Buffer.alloc(0)
  idHex = ''
  cls: PeerClass = 'agent'
  /** Piece block bytes received on this connection (sent: PeerWriter.uploaded). */
  downloaded = 0
  /** The peer's BEP 10 handshake carried our block-size key. */
  shoal = false
  /** Block size between us: what we request, and the largest request we serve. */
  blockSize = BLOCK_SIZE
  /** Requests the peer queues (its BEP 10 reqq). */
  reqq: number = DEFAULTS.defaultPeerReqq
  /** The peer's listen port from its BEP 10 handshake (0 if unknown). */
  listenPort = 0
  /** The zone the peer declared in its BEP 10 handshake (ZONE_KEY); undefined if none. */
  zone: string | undefined = undefined

  /**
   * The download side's record of the peer (download/peer-download.ts): set once by Downloader.attach
   * when a torrent takes the connection, written only by the Downloader and its Scheduler.
   */
  down!: PeerDownloadView
  /**
   * The upload side's record (upload/peer-upload.ts): set once by Uploader.attach, written only by
   * the Uploader and its ServeOnce.
   */
  up!: PeerUploadView

  // Bandwidth (useBandwidth): undefined when the engine has no caps.
  /** Piece data sent waits for this (Uploader.serve). */
  bwOut: EgressFlow | undefined = undefined
  /** Reads are counted here; the limiter pauses the socket while they are over the cap. */
  bwIn: IngressFlow | undefined = undefined
  /** The download's own ingress cap (Torrent.setIngressCap), on top of the host's. */
  bwCap: IngressFlow | undefined = undefined
  /** Lets both ingress flows pause the socket: it reads only while neither holds it. */
  private bwGate: PauseGate | undefined = undefined

  // Housekeeping.
  lastRecvAt: number

  constructor(init: PeerInit) {
    super(init.socket, init.blockSize, init.clock ?? systemClock)
    this.lastRecvAt = this.clock.now()
    this.direction = init.direction
    this.ip = init.ip
    this.port = init.port
    this.handler = init.handler
    this.log = init.logger
    this.timeouts = init.timeouts
    this.reader = new WireReader(this)
    this.socket.setNoDelay(true)
    this.socket.on('data', this.onSocketData)
    this.socket.on('error', this.onSocketError)
    this.socket.on('close', this.onSocketClose)
    this.socket.on('drain', this.onDrain)
    if (init.direction === 'out' && this.socket.connecting) {
      this.socket.once('connect', this.onConnect)
      this.setPhase(PHASE_CONNECT, this.timeouts.connectMs)
    } else {
      this.setPhase(PHASE_HANDSHAKE, this.timeouts.handshakeMs)
    }
  }

  /**
   * Parses bytes read from the socket before this Peer existed (an MSE/PE negotiation's
   * leftover). Called by the engine once the connection is tracked, so a handshake in them is
   * handled like any other.
   */
  receive(head: Buffer): void {
    if (head.length > 0) this.onSocketData(head)
  }

  /** Bytes read by a socket that delivers them through `onread` rather than 'data' events. */
  ingest(chunk: Buffer): void {
    this.onSocketData(chunk)
  }

  /** Where the socket's next read lands (ReadSink): the rest of a piece block being gathered. */
  nextRead(): Buffer | undefined {
    return this.closed ? undefined : this.reader.readTarget(READ_BUFFER)
  }

  /**
   * From inside PeerOwner.onPiece: keeps `block` (the reader's gather buffer, see
   * WireReader.adoptBlock) and hands the reader `replacement` in exchange; false = copy it.
   */
  adoptBlock(block: Buffer, replacement: Buffer): boolean {
    return this.reader.adoptBlock(block, replacement)
  }

  get addr(): string {
    return `${this.ip}:${this.port}`
  }

  get handshaken(): boolean {
    return this.idHex !== ''
  }

  /**
   * Hands the connection to a torrent: from now on messages go to `owner`, and the torrent's
   * logger (which carries its infohash) is the peer's.
   */
  attach(owner: PeerOwner, log: Logger): void {
    this.owner = owner
    this.log = log
  }

  /**
   * Puts the connection under the host's caps, in the torrent's group (its infohash), once
   * the handshake named the torrent; the few bytes before that are not counted. One flow
   * per direction per connection, so a block costs no allocation unless it has to wait.
   */
  useBandwidth(bw: HostBandwidth, group: string): void {
    if (this.closed || this.bwOut !== undefined) return
    this.bwOut = bw.egress.flow(group)
    // Not watched: sockets read through `onread` emit no 'data'; onSocketData counts every read.
    this.bwIn = bw.ingress.register(this.gate().handle(), group, { watch: false })
  }

  /** Puts the connection under its download's own ingress cap too (a job's bandwidth class). */
  useIngressCap(limiter: Limiter, group: string): void {
    if (this.closed || this.bwCap !== undefined) return
    this.bwCap = limiter.register(this.gate().handle(), group, { watch: false })
  }

  private gate(): PauseGate {
    this.bwGate ??= new PauseGate(this.socket)
    return this.bwGate
  }

  override close(reason: string): void {
    if (this.closed) return
    this.closed = true
    this.closeReason = reason
    this.reader.stop()
    this.cancelLazyFlush()
    if (this.phaseTimer !== undefined) this.clock.clearTimer(this.phaseTimer)
    this.phaseTimer = undefined
    this.socket.destroy()
    // Leaves the limiters: a serve() waiting for egress wakes up and sees the peer closed.
    this.bwOut?.close()
    this.bwIn?.close()
    this.bwCap?.close()
    this.onDrain()
    this.log.debug({ peer: this.addr, peerId: this.idHex || undefined, reason }, 'peer disconnected')
    try {
      this.owner?.onClose(this)
    } finally {
      this.handler.onClose(this)
    }
  }

  // ----- receiving -----

  /**
   * The one place socket reads arrive. The chunk may be a view of a reused read buffer:
   * nothing here keeps it past the call. The ingress cap counts it after it is parsed (it
   * was read already); over the cap, the limiter pauses the socket until the bytes are paid
   * for in fair order, so TCP pushes back on the sender.
   */
  private readonly onSocketData = (chunk: Buffer): void => {
    if (this.closed) return
    this.lastRecvAt = this.clock.now()
    try {
      this.reader.push(chunk)
    } catch (err) {
      this.log.warn({ err, peer: this.addr }, 'error handling peer message; disconnecting')
      this.close('internal error')
    }
    const bwIn = this.bwIn
    if (bwIn !== undefined) bwIn.received(chunk.length)
    const bwCap = this.bwCap
    if (bwCap !== undefined) bwCap.received(chunk.length)
  }

  onProtocolError(why: string): void {
    this.log.debug({ peer: this.addr, why }, 'protocol violation')
    this.close(why)
  }

  onHandshake(raw: Buffer): void {
    const id = Buffer.from(raw.subarray(48, 68))
    this.id = id
    this.idHex = id.toString('hex')
    this.cls = classifyPeerId(id)
    this.fast = (raw[27]! & 0x04) !== 0
    this.extended = (raw[25]! & 0x10) !== 0
    this.setPhase(PHASE_FIRST, this.timeouts.firstMessageMs)
    if (!this.handler.onHandshake(this, raw.toString('hex', 28, 48), id)) this.close('handshake refused')
  }

  onPiece(index: number, offset: number, block: Buffer): void {
    if (this.phase !== PHASE_OPEN) this.setPhase(PHASE_OPEN, 0)
    this.downloaded += block.length
    this.lastBlockAt = this.lastRecvAt
    this.owner?.onPiece(this, index, offset, block)
  }

  onMessage(id: number, p: Buffer): void {
    if (this.phase !== PHASE_OPEN) this.setPhase(PHASE_OPEN, 0)
    const owner = this.owner
    if (owner === undefined) return
    switch (id) {
      case MSG.CHOKE:
        owner.onChoke(this)
        break
      case MSG.UNCHOKE:
        owner.onUnchoke(this)
        break
      case MSG.INTERESTED:
        this.peerInterested = true
        this.idleSince = 0
        owner.onInterested(this)
        break
      case MSG.NOT_INTERESTED:
        this.peerInterested = false
        if (!this.amInterested) this.idleSince = this.clock.now()
        owner.onUninterested(this)
        break
      case MSG.HAVE:
        owner.onHave(this, p.readUInt32BE(0))
        break
      case MSG.BITFIELD:
        owner.onBitfield(this, p)
        break
      case MSG.REQUEST:
        owner.onRequest(this, p.readUInt32BE(0), p.readUInt32BE(4), p.readUInt32BE(8))
        break
      case MSG.CANCEL:
        owner.onCancel(this, p.readUInt32BE(0), p.readUInt32BE(4), p.readUInt32BE(8))
        break
      case MSG.EXTENDED:
        if (p[0] === 0) this.onExtendedHandshake(p.subarray(1))
        break
      case MSG.HAVE_ALL:
      case MSG.HAVE_NONE:
      case MSG.REJECT:
      case MSG.SUGGEST:
      case MSG.ALLOWED_FAST:
        // BEP 6: a fast message on a connection that did not negotiate it closes it.
        if (!this.fast) this.close(`fast message ${id} without BEP 6`)
        else if (id === MSG.HAVE_ALL) owner.onHaveAll(this)
        else if (id === MSG.HAVE_NONE) owner.onHaveNone(this)
        else if (id === MSG.REJECT)
          owner.onReject(this, p.readUInt32BE(0), p.readUInt32BE(4), p.readUInt32BE(8))
        // suggest and allowed-fast are hints we do not need
        break
      default:
      // port (DHT) and unknown ids: ignored, as BEP 3 asks
    }
  }

  /**
   * The peer's BEP 10 handshake: reqq bounds our pipeline, p is its listen port, and a Shoal
   * peer's block offer sets the block size between us (the smaller offer). Malformed content
   * is ignored rather than fatal: it is optional information.
   */
  private onExtendedHandshake(payload: Buffer): void {
    const h = readExtendedHandshake(payload)
    if (h.reqq !== undefined) this.reqq = h.reqq
    if (h.listenPort !== undefined) this.listenPort = h.listenPort
    if (h.zone !== undefined) this.zone = h.zone
    if (h.blockOffer !== undefined) {
      this.shoal = true
      this.blockSize = Math.min(h.blockOffer, this.offeredBlock)
    }
  }

  // ----- lifecycle -----

  private setPhase(phase: number, ms: number): void {
    this.phase = phase
    if (this.phaseTimer !== undefined) this.clock.clearTimer(this.phaseTimer)
    this.phaseTimer = undefined
    if (ms > 0 && !this.closed) this.phaseTimer = this.clock.setTimer(this.onPhaseTimeout, ms)
  }

  private readonly onPhaseTimeout = (): void => {
    const what = ['connect', 'handshake', 'first message'][this.phase] ?? 'phase'
    this.close(`${what} timeout`)
  }

  private readonly onConnect = (): void => {
    if (this.phase === PHASE_CONNECT) this.setPhase(PHASE_HANDSHAKE, this.timeouts.handshakeMs)
  }

  private readonly onSocketError = (err: Error): void => {
    this.close(`socket error: ${(err as NodeJS.ErrnoException).code ?? err.message}`)
  }

  private readonly onSocketClose = (): void => {
    this.close('socket closed')
  }
}
