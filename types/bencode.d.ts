declare module 'bencode' {
  function encode(data: unknown): Uint8Array
  function decode(data: Uint8Array | string, encoding?: string): unknown
  function decode(data: Uint8Array, start: number, end: number, encoding?: string): unknown
  const bencode: { encode: typeof encode; decode: typeof decode; byteLength(data: unknown): number }
  export default bencode
}
