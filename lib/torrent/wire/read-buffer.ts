/**
 * Socket reads into one buffer per connection (Node's `onread`) instead of a fresh 64 KiB
 * chunk per read. Each of those chunks is an external allocation V8 counts: at a few MB/s per
 * peer they drove a full mark-compact about once a second in every agent, and the swarm
 * benchmark spent ~20 % of its CPU in the garbage collector.
 *
 * Node offers `onread` only for sockets it creates (net.connect, new Socket): dial() passes it
 * directly. An accepted socket is re-created here around the same libuv handle, which is what
 * the Socket constructor's `handle` option is for; the accepted Socket object is retired
 * without closing the handle. The consumer must take what it needs from each view during the
 * callback: the buffer is refilled by the next read.
 */
import { Socket } from 'node:net'

/** What Node reads per 'data' chunk anyway, and what the ingress limiter assumes. */
export const READ_BUFFER = 64 << 10

export interface ReadTarget {
  ingest(chunk: Buffer): void
  /**
   * Where the next read should land instead of the read buffer (at most READ_BUFFER bytes),
   * or undefined. Asked after every read: the target hands out memory it will expect `ingest`
   * to bring back filled in place (the rest of a piece block being assembled).
   */
  nextRead(): Buffer | undefined
}

/**
 * Hands a socket's reads to whoever is set as `target`: views of its one read buffer, or of the
 * memory the target asked the next read to land in (Node asks `buffer()` after every read).
 */
export class ReadSink {
  target: ReadTarget | undefined
  private readonly buffer = Buffer.allocUnsafe(READ_BUFFER)
  readonly onRead = (n: number, buf: Uint8Array): boolean => {
    this.target?.ingest((buf as Buffer).subarray(0, n))
    return true
  }

  private readonly next = (): Buffer => this.target?.nextRead() ?? this.buffer

  /** The `onread` option of net.connect / new Socket. */
  options(): { buffer: () => Buffer; callback: (n: number, buf: Uint8Array) => boolean } {
    return { buffer: this.next, callback: this.onRead }
  }
}

/** The libuv handle a net.Socket wraps (Node's `_handle`; stable since Node 0.x). */
interface StreamHandle {
  reading?: boolean
  readStop(): number
  readStart(): number
}
type HandleHolder = { _handle: StreamHandle | null }

/**
 * Re-creates an accepted, plain socket so that its reads go to `sink`. Returns the new socket
 * and any bytes Node had already read and buffered (to be parsed first), or undefined when
 * this socket cannot be adopted (not a net.Socket, closing, or with writes pending): the
 * caller then keeps the original and its 'data' events.
 *
 * Call it synchronously from the code that removed the old socket's 'data' listener (a
 * 'data' event comes from the event loop, so none is lost in between).
 */
export function adoptReads(old: Socket, sink: ReadSink): { socket: Socket; head: Buffer } | undefined {
  const holder = old as unknown as HandleHolder
  const handle = holder._handle
  if (
    !(old instanceof Socket) ||
    handle === null ||
    typeof handle?.readStop !== 'function' ||
    old.destroyed ||
    old.connecting ||
    old.writableLength > 0 ||
    old.listenerCount('data') > 0
  )
    return undefined
  handle.reading = false
  handle.readStop()
  // Retire the old Socket without closing the handle: with no handle, destroy() only marks
  // it destroyed, emits 'close' (the server's connection count drops) and frees nothing else.
  holder._handle = null
  const buffered: Buffer[] = []
  for (let chunk = old.read() as Buffer | null; chunk !== null; chunk = old.read() as Buffer | null)
    buffered.push(chunk)
  old.removeAllListeners()
  old.on('error', ignore)
  old.destroy()
  const socket = new Socket({ handle, onread: sink.options(), readable: true, writable: true } as never)
  const head = buffered.length === 1 ? buffered[0]! : Buffer.concat(buffered)
  return { socket, head }
}

function ignore(): void {}
