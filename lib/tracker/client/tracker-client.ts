/**
 * Client of a Shoal tracker (or any BEP 3 HTTP tracker): the compact announce the BitTorrent
 * engine uses as its PeerSource, and metainfo by digest. Tracker answers are untrusted input:
 * sizes are bounded and every field is checked before use.
 *
 * Errors are classified for TrackerSet's failover: a *fault* (unreachable, timed out, an answer
 * that is not a tracker's) means "try another tracker"; a tracker's own answer (a bencoded
 * 'failure reason', a coded JSON error such as BLOB_NOT_FOUND) is authoritative and is not.
 */
import { isIP } from 'node:net'
import { bencodeDecode } from '../../core/bencode.js'
import type { Digest } from '../../core/index.js'
import { MAX_METAINFO_BYTES } from '../../core/index.js'
import { isShoalError, ShoalError, toShoalError } from '../../errors/index.js'
import { errorFromResponse, HttpClient, type ResponseData, readLimited, urlPath } from '../../http/index.js'
import type { VerifyResult } from '../../origin/client/index.js'
import type { AnnouncePeer, AnnounceRequest, AnnounceResponse } from '../../torrent/index.js'

export const MAX_ANNOUNCE_RESPONSE_BYTES = 1 << 20
const DEFAULT_INTERVAL = 60
const MAX_ERROR_BODY = 64 << 10
/** The origin re-hashes (and may restore) the blob before a corrupt report is answered. */
const REPORT_TIMEOUT_MS = 10 * 60_000
/** Every non-2xx status: the client classifies answers itself instead of HttpClient throwing. */
const NON_2XX = Array.from({ length: 400 }, (_, i) => 200 + i).filter((s) => s >= 300)

/** Errors that say "this tracker is not working" rather than "this tracker said no". */
const faults = new WeakSet<Error>()

function fault<E extends Error>(err: E): E {
  faults.add(err)
  return err
}

/**
 * True when `err` means the tracker could not be used (unreachable, timed out, answered with
 * something that is not a tracker's answer): the caller may fail over to another tracker.
 */
export function isTrackerFault(err: unknown): boolean {
  return err instanceof Error && faults.has(err)
}

/** True for a tracker's bencoded 'failure reason' (UPSTREAM_REFUSED with details.reason): a deliberate refusal, not a fault. */
export function isTrackerRefusal(err: unknown): boolean {
  return isShoalError(err, 'UPSTREAM_REFUSED') && typeof err.details?.reason === 'string'
}

/** The engine's announce request (this client is its PeerSource), plus BEP 3's optional `ip`. */
export interface TrackerAnnounceRequest extends AnnounceRequest {
  /** Only honoured by trackers configured with trustClientIp. */
  ip?: string
}

export type TrackerPeer = AnnouncePeer
export type TrackerAnnounceResponse = AnnounceResponse

export class TrackerClient {
  readonly baseUrl: string
  private readonly http: HttpClient
  private readonly timeoutMs: number
  private readonly zone: string | undefined

  /**
   * `baseUrl` is `http://host:port` or just `host:port`. `zone`: this host's zone, sent on every
   * announce (Shoal's `zone` parameter) so a Shoal tracker hands out same-zone peers first.
   */
  constructor(baseUrl: string, opts: { timeoutMs?: number; zone?: string } = {}) {
    this.timeoutMs = opts.timeoutMs ?? 15_000
    this.zone = opts.zone
    this.http = new HttpClient(baseUrl, { name: 'tracker', timeoutMs: this.timeoutMs })
    this.baseUrl = this.http.baseUrl
  }

  /**
   * Compact announce; a tracker's 'failure reason' becomes UPSTREAM_REFUSED carrying that reason
   * (details.reason), an answer that is not a valid announce answer UPSTREAM_ERROR.
   */
  async announce(req: TrackerAnnounceRequest): Promise<TrackerAnnounceResponse> {
    if (req.peerId.length !== 20)
      throw new ShoalError('BAD_REQUEST', `peer id must be 20 bytes, got ${req.peerId.length}`)
    let query =
      `info_hash=${encodeBytes(req.infoHash.toBuffer())}&peer_id=${encodeBytes(req.peerId)}` +
      `&port=${int(req.port)}&uploaded=${int(req.uploaded)}&downloaded=${int(req.downloaded)}&left=${int(req.left)}&compact=1`
    if (req.event) query += `&event=${req.event}`
    if (req.numwant !== undefined) query += `&numwant=${int(req.numwant)}`
    if (req.ip) query += `&ip=${encodeURIComponent(req.ip)}`
    if (this.zone) query += `&zone=${encodeURIComponent(this.zone)}`
    const body = await this.fetch(`/announce?${query}`, MAX_ANNOUNCE_RESPONSE_BYTES, req.signal, true)
    try {
      return parseAnnounceResponse(body)
    } catch (err) {
      // A refusal is the tracker working as designed; garbage means it is not a (working) tracker.
      throw isTrackerRefusal(err) ? err : fault(toShoalError(err, 'UPSTREAM_ERROR'))
    }
  }

  /** The bencoded .torrent for a blob (the tracker fetches it from the origins). */
  async metainfo(ns: string, digest: Digest, signal?: AbortSignal): Promise<Buffer> {
    return this.fetch(urlPath`/namespace/${ns}/blobs/${digest}/metainfo`, MAX_METAINFO_BYTES, signal, false)
  }

  /**
   * Reports a piece that failed SHA-1 from the peer at `peer` (ip:port as handed out); the
   * tracker relays it to that origin, which re-hashes its copy and restores it from the backend
   * before answering. Rejects with BLOB_CORRUPT when the backend's copy is corrupt too, and with
   * NOT_FOUND when the peer is not one of the tracker's origins.
   */
  async reportCorrupt(
    ns: string,
    digest: Digest,
    report: { peer: string; piece?: number },
    signal?: AbortSignal,
  ): Promise<VerifyResult> {
    const path = urlPath`/namespace/${ns}/blobs/${digest}/corrupt`
    const body = await this.fetch(path, MAX_ERROR_BODY, signal, false, {
      json: report,
      timeoutMs: REPORT_TIMEOUT_MS,
    })
    try {
      return JSON.parse(body.toString('utf8')) as VerifyResult
    } catch (err) {
      throw fault(
        new ShoalError('UPSTREAM_ERROR', `tracker at ${this.baseUrl} sent invalid JSON`, { cause: err }),
      )
    }
  }

  /**
   * GET (or with `post`, a JSON POST) with an overall deadline (headers and body) and a bounded
   * body. Any non-2xx answer to an announce is a fault (trackers answer announces with 200,
   * refusals included); for other paths a coded JSON error is the tracker's answer and only
   * other non-2xx answers are faults.
   */
  private async fetch(
    path: string,
    limit: number,
    signal: AbortSignal | undefined,
    announce: boolean,
    post?: { json: unknown; timeoutMs: number },
  ): Promise<Buffer> {
    const timeoutMs = post?.timeoutMs ?? this.timeoutMs
    const deadline = AbortSignal.timeout(timeoutMs)
    const combined = signal ? AbortSignal.any([signal, deadline]) : deadline
    let res: ResponseData | undefined
    try {
      res = post
        ? await this.http.request('POST', path, {
            signal: combined,
            accept: NON_2XX,
            timeoutMs,
            body: JSON.stringify(post.json),
            headers: { 'content-type': 'application/json' },
          })
        : await this.http.request('GET', path, { signal: combined, accept: NON_2XX })
      if (res.statusCode >= 300) {
        const where = `tracker at ${this.baseUrl}`
        const { error, coded } = await errorFromResponse(
          res,
          where,
          post ? 'POST' : 'GET',
          withoutQuery(path),
        )
        throw announce || !coded ? fault(error) : error
      }
      return await readLimited(res, limit, "the tracker's answer")
    } catch (err) {
      res?.body.destroy()
      if (signal?.aborted) {
        throw isShoalError(err, 'ABORTED')
          ? err
          : new ShoalError('ABORTED', 'tracker request aborted', { cause: err })
      }
      if (deadline.aborted) {
        throw fault(
          new ShoalError('TIMEOUT', `tracker at ${this.baseUrl} did not answer within ${timeoutMs} ms`, {
            cause: err,
          }),
        )
      }
      if (isTrackerFault(err) || (res !== undefined && res.statusCode >= 300)) throw err
      // Unreachable, headers timeout, connection lost mid-body, an oversized answer: all faults.
      throw fault(toShoalError(err, 'UNAVAILABLE'))
    }
  }
}

/** Decodes a bencoded announce answer, compact or not, defensively. Exported for tests. */
export function parseAnnounceResponse(body: Buffer): TrackerAnnounceResponse {
  let decoded: unknown
  try {
    decoded = bencodeDecode(body)
  } catch (err) {
    throw new ShoalError('UPSTREAM_ERROR', 'tracker sent an answer that is not valid bencode', { cause: err })
  }
  if (!isDict(decoded)) throw new ShoalError('UPSTREAM_ERROR', 'tracker answer is not a bencoded dictionary')
  const failure = field(decoded, 'failure reason')
  if (failure !== undefined) {
    const reason =
      failure instanceof Uint8Array ? Buffer.from(failure).toString('utf8').slice(0, 500) : 'unspecified'
    throw new ShoalError('UPSTREAM_REFUSED', `tracker refused the announce: ${reason}`, {
      details: { reason },
    })
  }
  const rawInterval = field(decoded, 'interval')
  const interval =
    typeof rawInterval === 'number' && Number.isFinite(rawInterval) && rawInterval >= 1
      ? Math.min(Math.floor(rawInterval), 86_400)
      : DEFAULT_INTERVAL
  const peers: TrackerPeer[] = []
  const v4 = field(decoded, 'peers')
  if (v4 instanceof Uint8Array) compactPeers(Buffer.from(v4), 4, peers)
  else if (Array.isArray(v4)) dictPeers(v4, peers)
  else if (v4 !== undefined)
    throw new ShoalError('UPSTREAM_ERROR', 'tracker answer has a malformed "peers" field')
  const v6 = field(decoded, 'peers6')
  if (v6 instanceof Uint8Array) compactPeers(Buffer.from(v6), 16, peers)
  else if (Array.isArray(v6)) dictPeers(v6, peers)
  return { interval, peers }
}

function compactPeers(buf: Buffer, addrLen: 4 | 16, out: TrackerPeer[]): void {
  const entry = addrLen + 2
  if (buf.length % entry !== 0) {
    throw new ShoalError(
      'UPSTREAM_ERROR',
      `tracker sent ${buf.length} bytes of compact peers, not a multiple of ${entry}`,
    )
  }
  for (let off = 0; off < buf.length; off += entry) {
    const port = buf.readUInt16BE(off + addrLen)
    if (port === 0) continue
    out.push({ ip: addrLen === 4 ? ipv4(buf, off) : ipv6(buf, off), port })
  }
}

function dictPeers(list: unknown[], out: TrackerPeer[]): void {
  for (const item of list) {
    if (!isDict(item)) continue
    const ipField = field(item, 'ip')
    const port = field(item, 'port')
    const id = field(item, 'peer id')
    if (
      !(ipField instanceof Uint8Array) ||
      typeof port !== 'number' ||
      !Number.isInteger(port) ||
      port < 1 ||
      port > 65535
    )
      continue
    const ip = Buffer.from(ipField).toString('utf8')
    if (!isIP(ip)) continue // host names would need DNS here; Shoal trackers only send literals
    const peer: TrackerPeer = { ip, port }
    if (id instanceof Uint8Array && id.length === 20) peer.peerId = Buffer.from(id)
    out.push(peer)
  }
}

function ipv4(buf: Buffer, off: number): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`
}

function ipv6(buf: Buffer, off: number): string {
  const words: string[] = []
  for (let i = 0; i < 8; i++) words.push(buf.readUInt16BE(off + i * 2).toString(16))
  // Node accepts the uncompressed form everywhere; net.connect does not need '::' shortening.
  return words.join(':')
}

function isDict(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array) && !Array.isArray(v)
}

/** Own properties only: a hostile '__proto__' key must not reach into the prototype. */
function field(dict: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(dict, key) ? dict[key] : undefined
}

/** Every byte as %XX: safe for any tracker, whatever it thinks '+' or '~' mean. */
export function encodeBytes(bytes: Uint8Array): string {
  let out = ''
  for (const b of bytes) out += `%${b.toString(16).padStart(2, '0')}`
  return out
}

/** The path without its query, for messages (an announce's query is percent-encoded bytes). */
function withoutQuery(path: string): string {
  const q = path.indexOf('?')
  return q < 0 ? path : path.slice(0, q)
}

function int(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new ShoalError('BAD_REQUEST', `announce values must be non-negative integers, got ${n}`)
  return String(n)
}
