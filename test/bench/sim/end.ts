/**
 * One end of a simulated connection: host `host`'s record of peer `remote`, with the surface of
 * lib/torrent's Peer that the engine's Scheduler and Uploader use (they take it as a Peer). Every
 * message it sends reaches the other end one latency later, as an event; nothing else crosses.
 */
import { silentLogger } from '../../../lib/log/index.js'
import type { PeerDownload } from '../../../lib/torrent/download/peer-download.js'
import type { PeerClass } from '../../../lib/torrent/index.js'
import type { PeerUpload } from '../../../lib/torrent/upload/peer-upload.js'
import type { Peer } from '../../../lib/torrent/wire/peer.js'
import type { SimHost } from './host.js'

const LOG = silentLogger()

export class SimEnd {
  readonly host: SimHost
  readonly remote: SimHost
  /** The remote's end for us (set when both ends exist). */
  other!: SimEnd
  readonly addr: string
  readonly ip: string
  readonly cls: PeerClass
  readonly blockSize: number
  readonly reqq = 250
  readonly fast = true
  readonly log = LOG
  closed = false
  /** We choke the remote (the Uploader changes it through choke/unchoke). */
  amChoking = true
  amInterested = false
  peerInterested = false
  lastRecvAt = 0
  idleSince = 0
  down!: PeerDownload
  up!: PeerUpload
  /** Queued in the host's uplink rotation. */
  inReady = false
  /** Requests written since the last flush: one message batch per latency (piece, offset, length). */
  private readonly outbox: number[] = []

  constructor(host: SimHost, remote: SimHost, blockSize: number) {
    this.host = host
    this.remote = remote
    this.addr = `${remote.ip}:6881`
    this.ip = remote.ip
    this.cls = remote.origin ? 'origin' : 'agent'
    this.blockSize = blockSize
  }

  /** This end as the engine's Peer (the fields the Scheduler and Uploader read are all here). */
  get peer(): Peer {
    return this as unknown as Peer
  }

  private send(fn: (other: SimEnd) => void): void {
    const other = this.other
    this.host.net.events.after(this.host.net.latencyMs, () => {
      if (!other.closed) {
        other.lastRecvAt = this.host.net.events.now
        fn(other)
      }
    })
  }

  sendRequest(index: number, offset: number, length: number): void {
    if (this.outbox.length === 0) {
      this.send((other) => {
        const box = this.outbox
        for (let k = 0; k < box.length; k += 3) other.host.onRequest(other, box[k]!, box[k + 1]!, box[k + 2]!)
        box.length = 0
      })
    }
    this.outbox.push(index, offset, length)
  }

  sendCancel(index: number, offset: number, length: number): void {
    this.send((other) => other.host.uploader.onCancel(other.peer, index, offset, length))
  }

  sendReject(index: number, offset: number, _length: number): void {
    this.send((other) => other.host.onReject(other, index, offset))
  }

  sendHave(index: number): void {
    this.send((other) => other.host.onHave(other, index))
  }

  choke(): void {
    this.amChoking = true
    this.send((other) => {
      other.down.peerChoking = true
    })
  }

  unchoke(): void {
    this.amChoking = false
    this.send((other) => other.host.onUnchoke(other))
  }

  interested(): void {
    if (this.amInterested) return
    this.amInterested = true
    this.send((other) => {
      other.peerInterested = true
      other.host.uploader.onInterested(other.peer, other.host.net.events.now)
    })
  }

  uninterested(): void {
    if (!this.amInterested) return
    this.amInterested = false
    this.send((other) => {
      other.peerInterested = false
      other.host.uploader.onUninterested(other.peer, other.host.peerIter, other.host.net.events.now)
    })
  }

  close(_reason: string): void {
    this.host.net.disconnect(this.host, this.remote)
  }

  /** The wire reader never hands over whole-piece blocks here (there are no bytes). */
  adoptBlock(): boolean {
    return false
  }
}
