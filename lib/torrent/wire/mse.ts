/**
 * MSE/PE (Message Stream Encryption) for incoming connections. Stock clients (aria2,
 * libtorrent, Transmission) open with an MSE handshake and only retry in plain after it
 * fails, which costs aria2 a second per connection. So every incoming socket passes through
 * MseResponder before it becomes a Peer: a plain handshake (19, "BitTorrent protocol") goes
 * straight through; anything else is an MSE initiator's DH key, answered as side B of the
 * spec. We select plaintext whenever the peer offers it (aria2 does by default), so after the
 * handshake the socket carries plain BitTorrent and the hot path pays nothing; a peer that
 * offers RC4 alone gets an Rc4Socket (JS RC4: Node 20's OpenSSL 3 has none without the legacy
 * provider). bittorrent-protocol's mse.js is part of its Wire's parser, which the engine no
 * longer uses. Outgoing connections stay plain, which every client accepts.
 * Spec and measurements: docs/interop.md.
 */
import { createDiffieHellman, createHash, type DiffieHellman, randomBytes, randomInt } from 'node:crypto'
import type { Socket } from 'node:net'
import { ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { Rc4, Rc4Socket } from './rc4.js'

/** The MSE prime (768 bits) and generator 2, from the spec. */
const PRIME = Buffer.from(
  'ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f14374fe1356d6d51c245e485b576625e7ec6f44c42e9a63a36210000000000090563',
  'hex',
)
const KEY_LENGTH = 96
const PSTR = Buffer.from('\x13BitTorrent protocol', 'latin1')
const MAX_PAD = 512
const VC_LENGTH = 8
const VC = Buffer.alloc(VC_LENGTH)
const CRYPTO_PLAIN = 0x01
const CRYPTO_RC4 = 0x02
/**
 * Incoming connections in this stage at once (each holds a socket and ~1 KiB): the engine's
 * own cap on connections still in their handshake, applied before they become Peers.
 */
const MAX_PENDING = 256
/** IA is the initiator's first payload: a BitTorrent handshake and maybe a little more. */
const MAX_IA = 16 << 10

export interface MseHost {
  readonly logger: Logger
}

/** The torrents an SKEY may name, keyed by infohash hex (the engine's own Map fits). */
export interface TorrentKeys {
  has(infoHashHex: string): boolean
  keys(): IterableIterator<string>
}

/**
 * Receives the socket (or its decrypting wrapper) and `head`, the plain bytes already read
 * (the BitTorrent handshake, or its start), to be parsed before what the socket delivers next;
 * `deadline` is when the handshake's time (given to accept()) runs out.
 */
export type OnPlainStream = (socket: Socket, ip: string, port: number, head: Buffer, deadline: number) => void
/** A socket accept() took ended without being handed over (refused, failed, timed out). */
export type OnDropped = (ip: string) => void

export class MseResponder {
  private readonly pending = new Set<Handshake>()
  private readonly skeys = new SkeyIndex()
  private dh: DiffieHellman | undefined
  private closed = false

  /** host is read at accept time (the engine passes itself while still being constructed). */
  constructor(
    private readonly host: MseHost,
    private readonly torrents: TorrentKeys,
    private readonly onReady: OnPlainStream,
    private readonly onDropped: OnDropped = () => {},
  ) {}

  /** Every socket taken here ends in onReady or onDropped, exactly once. */
  accept(socket: Socket, ip: string, port: number, timeoutMs: number): void {
    if (this.closed || this.pending.size >= MAX_PENDING) {
      socket.destroy()
      this.onDropped(ip)
      return
    }
    const h = new Handshake(this, socket, ip, port, Date.now() + timeoutMs)
    this.pending.add(h)
    h.start(timeoutMs)
  }

  /** Destroys every socket still in its MSE handshake; later accepts are refused. */
  close(): void {
    this.closed = true
    for (const h of [...this.pending]) h.fail('engine stopped')
  }

  /** @internal (Handshake) */
  done(h: Handshake, socket?: Socket, head?: Buffer): void {
    this.pending.delete(h)
    if (socket !== undefined && !this.closed) {
      this.onReady(socket, h.ip, h.port, head ?? Buffer.alloc(0), h.deadline)
      return
    }
    socket?.destroy()
    this.onDropped(h.ip)
  }

  /** @internal Our key pair for one handshake and the shared secret S (both 96 bytes). */
  exchange(peerKey: Buffer): { ours: Buffer; secret: Buffer } {
    // Creating a DH object checks the prime (~35 ms here), so one object serves every
    // handshake: a fresh 160-bit private key each time (the spec's recommendation), used
    // synchronously, so sharing it is safe.
    this.dh ??= createDiffieHellman(PRIME, 2)
    this.dh.setPrivateKey(randomBytes(20))
    const ours = leftPad(this.dh.generateKeys())
    const secret = leftPad(this.dh.computeSecret(peerKey))
    return { ours, secret }
  }

  /** @internal */
  lookup(req2: Buffer): string | undefined {
    return this.skeys.find(this.torrents, req2)
  }

  /** @internal */
  get log(): Logger {
    return this.host.logger
  }
}

/**
 * One incoming connection until it speaks plain (or decrypted) BitTorrent, as the spec's
 * steps in order. Written with awaits for clarity: it runs once per connection, never per
 * message.
 */
class Handshake {
  private buf: Buffer = Buffer.alloc(0)
  private timer: NodeJS.Timeout | undefined
  private wake: (() => void) | undefined
  private failure: string | undefined

  constructor(
    private readonly owner: MseResponder,
    private readonly socket: Socket,
    readonly ip: string,
    readonly port: number,
    readonly deadline: number,
  ) {}

  start(timeoutMs: number): void {
    this.socket.on('data', this.onData)
    this.socket.on('error', this.onError)
    this.socket.on('close', this.onClose)
    this.timer = setTimeout(this.onTimeout, timeoutMs)
    this.timer.unref()
    // computeSecret throws on invalid keys (0, 1, p-1): like any failure, the socket closes.
    this.run().catch((err: unknown) => this.fail(err instanceof ShoalError ? err.message : `error: ${err}`))
  }

  fail(reason: string): void {
    if (this.failure !== undefined) return
    this.failure = reason
    this.wake?.()
    const attached = this.detach()
    const msg = attached ? 'MSE handshake failed' : 'error after the MSE handshake'
    this.owner.log.debug({ peer: `${this.ip}:${this.port}`, reason }, msg)
    if (!attached) return
    this.socket.destroy()
    this.owner.done(this)
  }

  private async run(): Promise<void> {
    if ((await this.peek(PSTR.length)).equals(PSTR)) {
      this.handOver(undefined, undefined)
      return
    }
    // Step 1 (A→B): Ya, PadA. Step 2 (B→A): Yb, PadB.
    const { ours, secret } = this.owner.exchange(await this.read(KEY_LENGTH))
    this.socket.write(Buffer.concat([ours, randomBytes(randomInt(MAX_PAD + 1))]))
    // Step 3 (A→B): HASH('req1', S) after PadA, HASH('req2', SKEY) xor HASH('req3', S), then
    // ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA).
    await this.skipThrough(sha1('req1', secret), MAX_PAD + 20)
    const infoHashHex = this.owner.lookup(xor(await this.read(20), sha1('req3', secret)))
    if (infoHashHex === undefined) throw new ShoalError('PEER_PROTOCOL', 'unknown infohash')
    const skey = Buffer.from(infoHashHex, 'hex')
    const decrypt = new Rc4(sha1('keyA', secret, skey))
    const encrypt = new Rc4(sha1('keyB', secret, skey))
    const head = decrypt.update(await this.read(VC_LENGTH + 6))
    if (!head.subarray(0, VC_LENGTH).equals(VC))
      throw new ShoalError('PEER_PROTOCOL', 'bad verification constant')
    const provide = head.readUInt32BE(VC_LENGTH)
    const padC = head.readUInt16BE(VC_LENGTH + 4)
    if (padC > MAX_PAD) throw new ShoalError('PEER_PROTOCOL', 'PadC too long')
    const iaLength = decrypt.update(await this.read(padC + 2)).readUInt16BE(padC)
    if (iaLength > MAX_IA) throw new ShoalError('PEER_PROTOCOL', 'IA too long')
    const ia = decrypt.update(await this.read(iaLength))
    // Plaintext whenever offered: the payload then costs nothing; RC4 only when required.
    const select = provide & CRYPTO_PLAIN ? CRYPTO_PLAIN : provide & CRYPTO_RC4 ? CRYPTO_RC4 : 0
    if (select === 0) throw new ShoalError('PEER_PROTOCOL', `no supported crypto method offered (${provide})`)
    // Step 4 (B→A): ENCRYPT(VC, crypto_select, len(PadD), PadD).
    const padD = randomInt(MAX_PAD + 1)
    const reply = Buffer.alloc(VC_LENGTH + 6 + padD)
    reply.writeUInt32BE(select, VC_LENGTH)
    reply.writeUInt16BE(padD, VC_LENGTH + 4)
    this.socket.write(encrypt.update(reply))
    // IA was RC4 either way; what follows it is in the selected method.
    this.handOver(select === CRYPTO_RC4 ? { encrypt, decrypt } : undefined, ia)
  }

  /** The first n buffered bytes, waiting for them as needed; they stay buffered. */
  private async peek(n: number): Promise<Buffer> {
    if (this.failure !== undefined) throw new ShoalError('PEER_PROTOCOL', this.failure)
    while (this.buf.length < n) await this.more()
    return this.buf.subarray(0, n)
  }

  /** Exactly n bytes, consumed. */
  private async read(n: number): Promise<Buffer> {
    const out = await this.peek(n)
    this.buf = this.buf.subarray(n)
    return out
  }

  /** Drops everything up to and including `marker`, which must show within `within` bytes. */
  private async skipThrough(marker: Buffer, within: number): Promise<void> {
    for (;;) {
      const at = this.buf.indexOf(marker)
      if (at >= 0) {
        this.buf = this.buf.subarray(at + marker.length)
        return
      }
      if (this.buf.length >= within) throw new ShoalError('PEER_PROTOCOL', 'no HASH(req1, S) within PadA')
      await this.more()
    }
  }

  private more(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(new ShoalError('PEER_PROTOCOL', this.failure))
    return new Promise<void>((resolve) => {
      this.wake = resolve
    })
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }

  private readonly onError = (err: Error): void => this.fail(`socket error: ${err.message}`)
  private readonly onClose = (): void => this.fail('socket closed')
  private readonly onTimeout = (): void => this.fail('timeout')

  /**
   * Hands the socket over: `ia` (plain already), then whatever else is buffered, go first.
   * Nothing is lost in between: 'data' events come from the event loop, and the new owner
   * (Peer, or Rc4Socket) attaches its listener within this synchronous call.
   */
  private handOver(rc4: { encrypt: Rc4; decrypt: Rc4 } | undefined, ia: Buffer | undefined): void {
    const rest = this.buf
    if (!this.detach()) return
    if (rc4) rc4.decrypt.update(rest)
    const head = ia !== undefined && ia.length > 0 ? Buffer.concat([ia, rest]) : rest
    const socket = rc4 ? new Rc4Socket(this.socket, rc4.encrypt, rc4.decrypt).asSocket() : this.socket
    const mse = ia === undefined ? 'none' : rc4 ? 'rc4' : 'plaintext'
    this.owner.log.debug({ peer: `${this.ip}:${this.port}`, mse }, 'incoming handshake')
    this.owner.done(this, socket, head)
  }

  /** Stops listening; false when already detached. */
  private detach(): boolean {
    if (this.buf === DETACHED) return false
    this.buf = DETACHED
    clearTimeout(this.timer)
    this.socket.off('data', this.onData)
    this.socket.off('error', this.onError)
    this.socket.off('close', this.onClose)
    return true
  }
}

const DETACHED = Buffer.alloc(0)

/**
 * Which torrent an MSE peer means: it sends HASH('req2', infohash) (xor a per-connection
 * mask), so we keep that hash for every torrent the engine has, computed once per torrent.
 */
export class SkeyIndex {
  private readonly byReq2 = new Map<string, string>()
  private readonly indexed = new Set<string>()

  find(torrents: TorrentKeys, req2: Buffer): string | undefined {
    const key = req2.toString('hex')
    const hit = this.byReq2.get(key)
    if (hit !== undefined && torrents.has(hit)) return hit
    let count = 0
    for (const infoHashHex of torrents.keys()) {
      count++
      if (this.indexed.has(infoHashHex)) continue
      this.indexed.add(infoHashHex)
      this.byReq2.set(sha1('req2', Buffer.from(infoHashHex, 'hex')).toString('hex'), infoHashHex)
    }
    // Torrents come and go: forget removed ones once they outnumber the live ones.
    if (this.indexed.size > 2 * count + 64) {
      for (const [k, v] of this.byReq2) {
        if (torrents.has(v)) continue
        this.byReq2.delete(k)
        this.indexed.delete(v)
      }
    }
    const found = this.byReq2.get(key)
    return found !== undefined && torrents.has(found) ? found : undefined
  }
}

function sha1(label: string, ...parts: Buffer[]): Buffer {
  const h = createHash('sha1').update(label, 'latin1')
  for (const p of parts) h.update(p)
  return h.digest()
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length)
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!
  return out
}

/** DH values are 96-byte big-endian numbers; OpenSSL drops leading zero bytes. */
function leftPad(b: Buffer): Buffer {
  return b.length === KEY_LENGTH ? b : Buffer.concat([Buffer.alloc(KEY_LENGTH - b.length), b])
}
