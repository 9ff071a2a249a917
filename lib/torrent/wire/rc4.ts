/**
 * RC4 for MSE/PE's encrypted mode, in JavaScript: Node 20's OpenSSL 3 has no RC4 without the
 * legacy provider. Only peers that refuse plaintext ever get here (see mse.ts).
 */
import type { Socket } from 'node:net'
import { Duplex } from 'node:stream'

/** RC4 with the first 1024 bytes of keystream dropped (as MSE requires), in place by default. */
export class Rc4 {
  private readonly s = new Uint8Array(256)
  private i = 0
  private j = 0

  constructor(key: Uint8Array) {
    const s = this.s
    for (let i = 0; i < 256; i++) s[i] = i
    for (let i = 0, j = 0; i < 256; i++) {
      j = (j + s[i]! + key[i % key.length]!) & 0xff
      const t = s[i]!
      s[i] = s[j]!
      s[j] = t
    }
    this.update(new Uint8Array(1024))
  }

  /** XORs `src` with the keystream into `dst` (default: src itself); returns dst. */
  update<T extends Uint8Array>(src: T, dst: Uint8Array = src): T {
    const s = this.s
    let i = this.i
    let j = this.j
    for (let k = 0, n = src.length; k < n; k++) {
      i = (i + 1) & 0xff
      const si = s[i]!
      j = (j + si) & 0xff
      const sj = s[j]!
      s[i] = sj
      s[j] = si
      dst[k] = src[k]! ^ s[(si + sj) & 0xff]!
    }
    this.i = i
    this.j = j
    return dst as T
  }
}

/**
 * A socket whose payload is RC4-encrypted, as the Socket that Peer expects: reads are
 * decrypted in place (the chunks are ours), writes into a new buffer (the caller may still
 * own its chunk), and a write completes only when the real socket does not need 'drain',
 * so Peer's backpressure (writableNeedDrain, 'drain', writableLength) keeps working.
 */
export class Rc4Socket extends Duplex {
  private waiting: ((err?: Error | null) => void) | undefined

  constructor(
    private readonly socket: Socket,
    private readonly enc: Rc4,
    private readonly dec: Rc4,
  ) {
    super({ writableHighWaterMark: socket.writableHighWaterMark })
    socket.on('data', this.onData)
    socket.on('drain', this.onDrain)
    socket.on('end', this.onEnd)
    socket.on('error', this.onError)
    socket.on('close', this.onClose)
  }

  /** Peer is typed for net.Socket; it uses only what a Duplex has, and setNoDelay. */
  asSocket(): Socket {
    return this as unknown as Socket
  }

  setNoDelay(noDelay?: boolean): this {
    this.socket.setNoDelay(noDelay)
    return this
  }

  override _read(): void {
    this.socket.resume()
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.send(this.enc.update(chunk, Buffer.allocUnsafe(chunk.length)), cb)
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    let n = 0
    for (const c of chunks) n += c.chunk.length
    const out = Buffer.allocUnsafe(n)
    let at = 0
    for (const c of chunks) {
      this.enc.update(c.chunk, out.subarray(at, at + c.chunk.length))
      at += c.chunk.length
    }
    this.send(out, cb)
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.waiting = undefined
    this.socket.destroy()
    cb(err)
  }

  private send(data: Buffer, cb: (err?: Error | null) => void): void {
    if (this.socket.write(data)) cb()
    else this.waiting = cb
  }

  private readonly onData = (chunk: Buffer): void => {
    if (!this.push(this.dec.update(chunk))) this.socket.pause()
  }

  private readonly onDrain = (): void => {
    const cb = this.waiting
    this.waiting = undefined
    cb?.()
  }

  private readonly onEnd = (): void => void this.push(null)
  private readonly onError = (err: Error): void => void this.destroy(err)
  private readonly onClose = (): void => void this.destroy()
}
