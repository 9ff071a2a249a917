/**
 * The BitTorrent HTTP announce (BEP 3, BEP 23 compact peers, BEP 7 peers6): a strict, bounded
 * parser for the raw query and the bencoded responses. info_hash and peer_id are raw bytes
 * percent-encoded one by one, so the query is decoded here byte-wise: URLSearchParams would
 * decode them as UTF-8 and corrupt every byte above 0x7f.
 */
import { isIP } from 'node:net'
import { bencodeEncode } from '../../core/bencode.js'
import { ShoalError } from '../../errors/index.js'
import { type PeerRecord, ZONE } from '../peerstore/types.js'

export const MAX_QUERY_BYTES = 4096
const MAX_PARAMS = 64
const DIGITS = /^[0-9]{1,16}$/

export type AnnounceEvent = 'started' | 'completed' | 'stopped' | ''

export interface AnnounceRequest {
  infoHash: Buffer
  infoHashHex: string
  peerId: Buffer
  peerIdHex: string
  port: number
  uploaded: number
  downloaded: number
  /** Bytes still missing; undefined when the client did not say (treated as incomplete). */
  left: number | undefined
  event: AnnounceEvent
  /** Already capped at maxNumWant. */
  numwant: number
  compact: boolean
  noPeerId: boolean
  /** The address handed out to other peers. */
  ip: string
  /** The address the request came from: the only thing origin status is derived from. */
  socketIp: string
  /** The zone the peer declared (Shoal's `zone` parameter; stock clients send none). */
  zone: string | undefined
}

export interface ParseOptions {
  remoteAddress: string | undefined
  maxNumWant: number
  defaultNumWant: number
  trustClientIp: boolean
}

/** Parses the raw query of `GET /announce?...`; throws BAD_ANNOUNCE with a reason for the client. */
export function parseAnnounce(rawQuery: string, opts: ParseOptions): AnnounceRequest {
  const params = decodeQuery(rawQuery)
  const infoHash = exactBytes(params, 'info_hash')
  const peerId = exactBytes(params, 'peer_id')
  const portText = text(params, 'port')
  if (portText === undefined) reject('port is missing')
  const port = integer('port', portText)
  if (port < 1 || port > 65535) reject(`port ${port} is out of range 1..65535`)
  const uploaded = optionalInteger(params, 'uploaded') ?? 0
  const downloaded = optionalInteger(params, 'downloaded') ?? 0
  const left = optionalInteger(params, 'left')
  const wanted = optionalInteger(params, 'numwant')
  const numwant = Math.min(wanted ?? opts.defaultNumWant, opts.maxNumWant)

  const eventText = text(params, 'event') ?? ''
  let event: AnnounceEvent
  if (eventText === '' || eventText === 'started' || eventText === 'completed' || eventText === 'stopped')
    event = eventText
  // BEP 21 'paused' (libtorrent's upload-only state) is a regular announce for this tracker.
  else if (eventText === 'paused') event = ''
  else reject(`event "${shorten(eventText)}" is not one of started, completed, stopped`)

  const zone = text(params, 'zone')
  if (zone !== undefined && !ZONE.test(zone))
    reject(`zone "${shorten(zone)}" must be 1-64 letters, digits, dots, dashes or underscores`)
  const compact = flag(params, 'compact', true)
  const noPeerId = flag(params, 'no_peer_id', false)

  const socketIp = normaliseIp(opts.remoteAddress)
  if (!socketIp) reject('cannot determine the client address')
  let ip = socketIp
  if (opts.trustClientIp) {
    const claimed = normaliseIp(text(params, 'ip'))
    if (claimed) ip = claimed
  }
  return {
    infoHash,
    infoHashHex: infoHash.toString('hex'),
    peerId,
    peerIdHex: peerId.toString('hex'),
    port,
    uploaded,
    downloaded,
    left,
    event,
    numwant,
    compact,
    noPeerId,
    ip,
    socketIp,
    zone,
  }
}

/**
 * Splits a query into name → raw (still percent-encoded) value, checking every value's encoding
 * on the way: '+' is a space (form encoding), '%XX' is one byte, any other character must be a
 * single byte. Values are decoded only when read (decodeText, decodeBytes): most are plain
 * digits, and an announce is the tracker's hot path. Repeated names are refused (an ambiguous
 * announce).
 */
export function decodeQuery(raw: string): Map<string, string> {
  if (raw.length > MAX_QUERY_BYTES)
    reject(`announce query is ${raw.length} bytes; the limit is ${MAX_QUERY_BYTES}`)
  const out = new Map<string, string>()
  if (raw === '') return out
  let parts = 1
  for (let i = raw.indexOf('&'); i >= 0; i = raw.indexOf('&', i + 1)) parts++
  if (parts > MAX_PARAMS) reject(`announce query has more than ${MAX_PARAMS} parameters`)
  let start = 0
  while (start <= raw.length) {
    let end = raw.indexOf('&', start)
    if (end < 0) end = raw.length
    if (end > start) {
      const eq = raw.indexOf('=', start)
      const nameEnd = eq < 0 || eq > end ? end : eq
      const name = decodeText(raw.slice(start, nameEnd))
      const value = nameEnd === end ? '' : raw.slice(nameEnd + 1, end)
      checkEncoding(value)
      if (out.has(name)) reject(`parameter "${shorten(name)}" is given more than once`)
      out.set(name, value)
    }
    start = end + 1
  }
  return out
}

/** Rejects what decodeText would: a malformed escape or a character that is not one byte. */
function checkEncoding(s: string): void {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x25) {
      if (hexValue(s.charCodeAt(i + 1)) < 0 || hexValue(s.charCodeAt(i + 2)) < 0)
        reject('malformed percent-encoding in the announce query')
      i += 2
    } else if (c > 0xff) {
      reject('announce query contains a non-byte character; percent-encode binary values')
    }
  }
}

/** A raw value's bytes as a latin1 string; the value itself when nothing in it is encoded. */
export function decodeText(s: string): string {
  let i = 0
  while (i < s.length) {
    const c = s.charCodeAt(i)
    if (c === 0x25 || c === 0x2b || c > 0xff) break
    i++
  }
  return i === s.length ? s : decodeBytes(s).toString('latin1')
}

/** A raw value's bytes. */
export function decodeBytes(s: string): Buffer {
  const bytes = Buffer.allocUnsafe(s.length)
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x25) {
      const hi = hexValue(s.charCodeAt(i + 1))
      const lo = hexValue(s.charCodeAt(i + 2))
      if (hi < 0 || lo < 0) reject('malformed percent-encoding in the announce query')
      bytes[n++] = hi * 16 + lo
      i += 2
    } else if (c === 0x2b) {
      bytes[n++] = 0x20
    } else if (c > 0xff) {
      reject('announce query contains a non-byte character; percent-encode binary values')
    } else {
      bytes[n++] = c
    }
  }
  return bytes.subarray(0, n)
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x41 && c <= 0x46) return c - 0x37
  if (c >= 0x61 && c <= 0x66) return c - 0x57
  return -1
}

function exactBytes(params: Map<string, string>, name: string): Buffer {
  const raw = params.get(name)
  if (raw === undefined) reject(`${name} is missing`)
  const value = decodeBytes(raw)
  if (value.length !== 20)
    reject(`${name} must be exactly 20 bytes (got ${value.length}); percent-encode each raw byte`)
  return value
}

function text(params: Map<string, string>, name: string): string | undefined {
  const raw = params.get(name)
  return raw === undefined ? undefined : decodeText(raw)
}

function integer(name: string, value: string): number {
  if (!DIGITS.test(value)) reject(`${name} must be a non-negative integer (got "${shorten(value)}")`)
  const n = Number(value)
  if (!Number.isSafeInteger(n)) reject(`${name} is too large`)
  return n
}

function optionalInteger(params: Map<string, string>, name: string): number | undefined {
  const value = text(params, name)
  return value === undefined ? undefined : integer(name, value)
}

function flag(params: Map<string, string>, name: string, dflt: boolean): boolean {
  const value = text(params, name)
  if (value === undefined || value === '') return dflt
  if (value === '1') return true
  if (value === '0') return false
  reject(`${name} must be 0 or 1`)
}

/** An IP literal without IPv4-mapping or zone; undefined when it is not a valid literal. */
export function normaliseIp(value: string | undefined): string | undefined {
  if (!value) return undefined
  let ip = value.trim()
  const zone = ip.indexOf('%')
  if (zone >= 0) ip = ip.slice(0, zone)
  if (/^::ffff:[0-9.]+$/i.test(ip)) ip = ip.slice(7)
  const family = isIP(ip)
  if (family === 4) return ip
  if (family === 6) return ip.toLowerCase()
  return undefined
}

/** 4 bytes for IPv4, 16 for IPv6, undefined when not a literal. */
export function ipToBytes(ip: string): Buffer | undefined {
  const family = isIP(ip)
  if (family === 4) return Buffer.from(ip.split('.').map(Number))
  if (family !== 6) return undefined
  let text = ip
  const tail: number[] = []
  const lastColon = text.lastIndexOf(':')
  const last = text.slice(lastColon + 1)
  if (last.includes('.')) {
    // Embedded IPv4 (e.g. ::ffff:1.2.3.4 or 64:ff9b::1.2.3.4): its 4 bytes are the last 2 words.
    const v4 = last.split('.').map(Number) as [number, number, number, number]
    tail.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3])
    text = text.slice(0, lastColon + 1)
    if (!text.endsWith('::')) text = text.slice(0, -1)
  }
  const [head = '', rest] = text.split('::') as [string, string | undefined]
  const words = (s: string) => (s === '' ? [] : s.split(':').map((h) => Number.parseInt(h, 16)))
  const left = words(head)
  const right = rest === undefined ? [] : words(rest)
  const fill = 8 - tail.length - left.length - right.length
  const all = [...left, ...new Array<number>(rest === undefined ? 0 : fill).fill(0), ...right, ...tail]
  const out = Buffer.alloc(16)
  for (let i = 0; i < 8; i++) out.writeUInt16BE(all[i] ?? 0, i * 2)
  return out
}

export interface AnnounceResponse {
  interval: number
  minInterval: number
  complete: number
  incomplete: number
  peers: PeerRecord[]
  compact: boolean
  noPeerId: boolean
}

/**
 * The bencoded answer; compact → 6-byte IPv4 entries in `peers`, 18-byte IPv6 ones in `peers6`.
 * The compact answer, the hot path of every announce, is written straight into one buffer (keys
 * in bencode's sorted order) rather than through the general encoder.
 */
export function encodeAnnounceResponse(r: AnnounceResponse): Buffer {
  if (!r.compact) {
    return bencodeEncode({
      interval: r.interval,
      'min interval': r.minInterval,
      complete: r.complete,
      incomplete: r.incomplete,
      peers: r.peers.map((p) =>
        r.noPeerId
          ? { ip: p.ip, port: p.port }
          : { 'peer id': Buffer.from(p.peerId, 'hex'), ip: p.ip, port: p.port },
      ),
    })
  }
  const v4 = Buffer.allocUnsafe(r.peers.length * 6)
  let n4 = 0
  let v6: Buffer[] | undefined
  for (const p of r.peers) {
    if (writeIpv4(p.ip, v4, n4)) {
      v4.writeUInt16BE(p.port, n4 + 4)
      n4 += 6
      continue
    }
    const addr = ipToBytes(p.ip)
    if (addr === undefined || addr.length !== 16) continue
    const entry = Buffer.alloc(18)
    addr.copy(entry)
    entry.writeUInt16BE(p.port, 16)
    v6 ??= []
    v6.push(entry)
  }
  const head =
    `d8:completei${int(r.complete)}e10:incompletei${int(r.incomplete)}e` +
    `8:intervali${int(r.interval)}e12:min intervali${int(r.minInterval)}e5:peers${n4}:`
  const n6 = v6 === undefined ? 0 : v6.length * 18
  const mid = n6 > 0 ? `6:peers6${n6}:` : ''
  const out = Buffer.allocUnsafe(head.length + n4 + mid.length + n6 + 1)
  let at = out.write(head, 0, 'latin1')
  at += v4.copy(out, at, 0, n4)
  if (v6 !== undefined && n6 > 0) {
    at += out.write(mid, at, 'latin1')
    for (const e of v6) at += e.copy(out, at)
  }
  out[at] = 0x65 // 'e'
  return out
}

/** A bencode integer's digits: whole numbers only (the counts and intervals always are). */
function int(n: number): string {
  return String(Math.trunc(n))
}

/** Writes a dotted-quad IPv4 literal's 4 bytes at `at`; false (nothing written) for anything else. */
function writeIpv4(ip: string, out: Buffer, at: number): boolean {
  let octet = 0
  let digits = 0
  let k = 0
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i)
    if (c >= 0x30 && c <= 0x39) {
      octet = octet * 10 + (c - 0x30)
      if (++digits > 3 || octet > 255) return false
    } else if (c === 0x2e && digits > 0 && k < 3) {
      out[at + k++] = octet
      octet = 0
      digits = 0
    } else return false
  }
  if (k !== 3 || digits === 0) return false
  out[at + 3] = octet
  return true
}

export function encodeFailure(reason: string): Buffer {
  return bencodeEncode({ 'failure reason': reason })
}

function reject(reason: string): never {
  throw new ShoalError('BAD_ANNOUNCE', reason)
}

function shorten(s: string): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?')
  return clean.length > 40 ? `${clean.slice(0, 40)}…` : clean
}
