/**
 * A peer's BEP 10 handshake, read into what the connection uses: reqq (bounds our pipeline),
 * p (its listen port), Shoal's block-size offer and zone label. Malformed content is ignored
 * rather than fatal (it is optional information), and a payload bigger than any real handshake
 * is not decoded at all.
 */
import { bencodeDecode } from '../../core/bencode.js'
import { MAX_EXTENDED_HANDSHAKE, validBlockSize, ZONE_LABEL } from '../types.js'
import { BLOCK_KEY, ZONE_KEY } from './peer-writer.js'

export interface ExtendedHandshake {
  reqq?: number
  listenPort?: number
  zone?: string
  /** A Shoal peer's block offer (a valid block size). */
  blockOffer?: number
}

export function readExtendedHandshake(payload: Buffer): ExtendedHandshake {
  if (payload.length > MAX_EXTENDED_HANDSHAKE) return {}
  let d: unknown
  try {
    d = bencodeDecode(payload)
  } catch {
    return {}
  }
  if (typeof d !== 'object' || d === null || d instanceof Uint8Array || Array.isArray(d)) return {}
  const h = d as Record<string, unknown>
  const out: ExtendedHandshake = {}
  if (Number.isInteger(h.reqq) && (h.reqq as number) > 0) out.reqq = Math.min(h.reqq as number, 2000)
  if (Number.isInteger(h.p) && (h.p as number) > 0 && (h.p as number) < 65536) out.listenPort = h.p as number
  const zone = h[ZONE_KEY]
  if (zone instanceof Uint8Array && zone.length <= 64) {
    const label = Buffer.from(zone).toString('latin1')
    if (ZONE_LABEL.test(label)) out.zone = label
  }
  const offer = h[BLOCK_KEY]
  if (Number.isInteger(offer) && validBlockSize(offer as number)) out.blockOffer = offer as number
  return out
}
