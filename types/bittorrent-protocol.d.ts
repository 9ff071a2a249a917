/**
 * bittorrent-protocol 5.x (ESM). @types/bittorrent-protocol describes v3, so this covers the
 * part of the v5 Wire that lib/torrent uses. Wire is a streamx Duplex: bytes from the socket
 * are written into it, and the bytes it reads out go to the socket.
 */
declare module 'bittorrent-protocol' {
  import { EventEmitter } from 'node:events'

  export interface WireExtensions {
    dht?: boolean
    fast?: boolean
    extended?: boolean
  }

  export interface WirePieceBits {
    get(index: number): boolean
  }

  type RequestCallback = (err: Error | null, block?: Uint8Array | null) => void
  type Respond = (err: Error | null, block?: Uint8Array) => void

  export default class Wire extends EventEmitter {
    constructor(type?: string, peEnabled?: 0 | 1 | 2)

    /** remote peer id, hex */
    peerId: string | null
    peerIdBuffer: Uint8Array | null
    type: string
    amChoking: boolean
    amInterested: boolean
    peerChoking: boolean
    peerInterested: boolean
    peerPieces: WirePieceBits
    extensions: WireExtensions
    peerExtensions: WireExtensions
    /** true when both sides set the BEP 6 bit */
    hasFast: boolean
    /** sent in our BEP 10 handshake, minus "m" */
    extendedHandshake: Record<string, unknown>
    peerExtendedHandshake: Record<string, unknown>
    /** outgoing requests not yet answered */
    requests: Array<{ piece: number; offset: number; length: number }>
    /** incoming requests not yet answered */
    peerRequests: Array<{ piece: number; offset: number; length: number }>
    uploaded: number
    downloaded: number
    readonly destroyed: boolean

    // Duplex (streamx) surface we use.
    write(chunk: Uint8Array): boolean
    end(): this
    destroy(): this | undefined

    setKeepAlive(enable: boolean): void
    setTimeout(ms: number, unref?: boolean): void

    handshake(infoHash: Uint8Array | string, peerId: Uint8Array | string, extensions?: WireExtensions): void
    keepAlive(): void
    choke(): void
    unchoke(): void
    interested(): void
    uninterested(): void
    have(index: number): void
    bitfield(bitfield: Uint8Array): void
    request(index: number, offset: number, length: number, cb?: RequestCallback): void
    piece(index: number, offset: number, block: Uint8Array): void
    cancel(index: number, offset: number, length: number): void
    haveAll(): void
    haveNone(): void
    reject(index: number, offset: number, length: number): void

    on(
      event: 'handshake',
      listener: (infoHash: string, peerId: string, extensions: WireExtensions) => void,
    ): this
    on(event: 'bitfield', listener: (bits: WirePieceBits & { buffer: Uint8Array }) => void): this
    on(event: 'have', listener: (index: number) => void): this
    on(
      event: 'have-all' | 'have-none' | 'choke' | 'unchoke' | 'interested' | 'uninterested',
      listener: () => void,
    ): this
    on(
      event: 'request',
      listener: (index: number, offset: number, length: number, respond: Respond) => void,
    ): this
    on(event: 'piece', listener: (index: number, offset: number, block: Uint8Array) => void): this
    on(event: 'reject' | 'cancel', listener: (index: number, offset: number, length: number) => void): this
    on(event: 'data', listener: (chunk: Uint8Array) => void): this
    on(event: 'error', listener: (err: Error) => void): this
    on(event: 'finish' | 'end' | 'close' | 'drain', listener: () => void): this
    on(event: string, listener: (...args: never[]) => void): this
  }
}
