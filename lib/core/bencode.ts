/** The one place the bencode package is imported (metainfo, tracker responses, announces). */
import bencode from 'bencode'

export function bencodeEncode(value: unknown): Buffer {
  return Buffer.from(bencode.encode(value))
}

/** Decodes bencode; byte strings come back as Uint8Array. Throws on malformed input. */
export function bencodeDecode(data: Uint8Array): unknown {
  return bencode.decode(data)
}
