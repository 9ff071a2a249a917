/**
 * Who a torrent is connected to: handshaken peers by id, outgoing dials by address, the
 * duplicate-connection rule, which announced addresses are worth dialling, and which IPs the
 * tracker listed (the Uploader keeps each peer's answer in its PeerUpload.listed).
 */

import type { AnnouncePeer } from '../types.js'
import type { Peer } from '../wire/peer.js'
import type { EngineContext } from './context.js'

export class PeerSet {
  /** Handshaken peers by peer id (hex). */
  readonly byId = new Map<string, Peer>()
  /** Outgoing connections alive or in progress, by dialled address. */
  readonly dialed = new Map<string, Peer>()
  /** Which peer id answered at an address, so a known peer is not dialled again. */
  private readonly addrIds = new Map<string, string>()
  /** IPs in the tracker's last two peer lists (isListed). */
  private listedIps = new Set<string>()
  private listedBefore = new Set<string>()
  private readonly ctx: EngineContext
  /** The torrent's infohash (hex): bans are per torrent. */
  private readonly infoHashHex: string

  constructor(ctx: EngineContext, infoHashHex: string) {
    this.ctx = ctx
    this.infoHashHex = infoHashHex
  }

  get size(): number {
    return this.byId.size
  }

  /**
   * The handshaken peers, as an iterable that can be walked more than once (the choker does:
   * ServeOnce's pass, then its own; unchokeWaiting once per free slot). A Map iterator would
   * be spent after the first walk, which left an origin's choker with nobody to rotate.
   */
  values(): Iterable<Peer> {
    return this.all_
  }
  private readonly all_: Iterable<Peer> = { [Symbol.iterator]: () => this.byId.values() }

  /** Every connection, handshaken or not (for shutdown). */
  all(): Peer[] {
    return [...this.byId.values(), ...this.dialed.values()]
  }

  /** Announced peers worth dialling now, within the connection limit. */
  *toDial(list: AnnouncePeer[]): Generator<AnnouncePeer> {
    const ctx = this.ctx
    for (const p of list) {
      if (this.byId.size + this.pendingDials() >= ctx.options.maxConnectionsPerTorrent || !ctx.canConnect())
        return
      if (typeof p.ip !== 'string' || !Number.isInteger(p.port) || p.port <= 0 || p.port > 65535) continue
      const addr = `${p.ip}:${p.port}`
      if (this.dialed.has(addr) || ctx.isSelf(p.ip, p.port) || ctx.isBanned(this.infoHashHex, addr)) continue
      const known = this.addrIds.get(addr)
      if (known !== undefined && this.byId.has(known)) continue
      if (p.peerId !== undefined && p.peerId.length === 20) {
        const id = Buffer.from(p.peerId)
        const hex = id.toString('hex')
        if (this.byId.has(hex) || ctx.isBanned(this.infoHashHex, hex) || id.equals(ctx.peerId)) continue
      }
      yield p
    }
  }

  /**
   * The tracker's answer: its peers are real agents (or origins), which the choker prefers.
   * Incoming connections come from ephemeral ports, so they are matched by IP; the last two
   * answers count, so a peer does not flap in and out with the tracker's shuffling.
   */
  noteListed(list: AnnouncePeer[]): void {
    const ips = this.listedBefore
    ips.clear()
    for (const p of list) if (typeof p.ip === 'string') ips.add(p.ip)
    this.listedBefore = this.listedIps
    this.listedIps = ips
  }

  /** Whether `ip` was in one of the tracker's last two answers: a peer we know is real. */
  isListed(ip: string): boolean {
    return this.listedIps.has(ip) || this.listedBefore.has(ip)
  }

  addDial(peer: Peer): void {
    this.dialed.set(peer.addr, peer)
  }

  onDialClosed(peer: Peer): void {
    if (this.dialed.get(peer.addr) === peer) this.dialed.delete(peer.addr)
  }

  /**
   * Registers a handshaken peer; false when it must be closed (limit reached, or a duplicate
   * that loses). When both sides dialled each other, the connection opened by the lower peer
   * id survives: both ends compute the same answer, so exactly one connection remains.
   * Incoming connections from one IP are limited (maxConnectionsPerIpPerTorrent). When the
   * torrent is full, `makeRoom` may close a peer that does not use its connection.
   */
  add(peer: Peer, makeRoom?: () => void): boolean {
    const o = this.ctx.options
    const existing = this.byId.get(peer.idHex)
    if (existing !== undefined) {
      if (existing.direction === peer.direction) return false
      if (this.initiator(existing).compare(this.initiator(peer)) < 0) return false
      existing.close('duplicate connection')
    }
    if (peer.direction === 'in' && this.incomingFrom(peer.ip) >= o.maxConnectionsPerIpPerTorrent) return false
    if (this.byId.size >= o.maxConnectionsPerTorrent) {
      makeRoom?.()
      if (this.byId.size >= o.maxConnectionsPerTorrent) return false
    }
    this.byId.set(peer.idHex, peer)
    if (peer.direction === 'out') this.addrIds.set(peer.addr, peer.idHex)
    return true
  }

  /** Forgets a closed peer; false when it was not (or no longer) the registered connection. */
  delete(peer: Peer): boolean {
    if (this.byId.get(peer.idHex) !== peer) return false
    this.byId.delete(peer.idHex)
    return true
  }

  private incomingFrom(ip: string): number {
    let n = 0
    for (const p of this.byId.values()) if (p.ip === ip && p.direction === 'in') n++
    return n
  }

  private pendingDials(): number {
    let n = 0
    for (const peer of this.dialed.values()) if (!peer.handshaken) n++
    return n
  }

  private initiator(peer: Peer): Buffer {
    return peer.direction === 'out' ? this.ctx.peerId : peer.id
  }
}
