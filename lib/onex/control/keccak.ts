/**
 * Keccak-256 (the original Keccak padding, 0x01, as Ethereum uses it; not NIST SHA3-256, which
 * pads with 0x06). node:crypto has no Keccak, and an Ethereum address is the last 20 bytes of
 * Keccak-256 of the public key. Lanes as BigInt: slow (tens of µs per block) but only used for a
 * chain's few account addresses. Tested against published vectors (test/unit/onex-keccak.test.ts).
 */

const MASK = (1n << 64n) - 1n
const RATE = 136 // bytes: 1088 bits for a 256-bit output

const ROUND_CONSTANTS = [
  0x0000000000000001n,
  0x0000000000008082n,
  0x800000000000808an,
  0x8000000080008000n,
  0x000000000000808bn,
  0x0000000080000001n,
  0x8000000080008081n,
  0x8000000000008009n,
  0x000000000000008an,
  0x0000000000000088n,
  0x0000000080008009n,
  0x000000008000000an,
  0x000000008000808bn,
  0x800000000000008bn,
  0x8000000000008089n,
  0x8000000000008003n,
  0x8000000000008002n,
  0x8000000000000080n,
  0x000000000000800an,
  0x800000008000000an,
  0x8000000080008081n,
  0x8000000000008080n,
  0x0000000080000001n,
  0x8000000080008008n,
]
/** Rotation offsets r[x + 5y]. */
const ROTATIONS = [
  0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14,
]

const rotl = (v: bigint, n: number): bigint =>
  n === 0 ? v : ((v << BigInt(n)) | (v >> BigInt(64 - n))) & MASK

function keccakF(a: bigint[]): void {
  const c: bigint[] = new Array(5).fill(0n)
  const b: bigint[] = new Array(25).fill(0n)
  for (const rc of ROUND_CONSTANTS) {
    for (let x = 0; x < 5; x++) c[x] = a[x]! ^ a[x + 5]! ^ a[x + 10]! ^ a[x + 15]! ^ a[x + 20]!
    for (let x = 0; x < 5; x++) {
      const d = c[(x + 4) % 5]! ^ rotl(c[(x + 1) % 5]!, 1)
      for (let y = 0; y < 25; y += 5) a[y + x] = a[y + x]! ^ d
    }
    for (let x = 0; x < 5; x++)
      for (let y = 0; y < 5; y++)
        b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(a[x + 5 * y]!, ROTATIONS[x + 5 * y]!)
    for (let x = 0; x < 5; x++)
      for (let y = 0; y < 25; y += 5)
        a[y + x] = b[y + x]! ^ (~b[y + ((x + 1) % 5)]! & MASK & b[y + ((x + 2) % 5)]!)
    a[0] = a[0]! ^ rc
  }
}

export function keccak256(data: Uint8Array): Buffer {
  return sponge256(data, 0x01)
}

/**
 * The 256-bit sponge with a given domain padding byte: 0x01 is Keccak-256, 0x06 is SHA3-256
 * (exported so the tests can check the permutation against node's sha3-256 on many lengths).
 */
export function sponge256(data: Uint8Array, padByte: number): Buffer {
  const padded = Buffer.alloc((Math.floor(data.length / RATE) + 1) * RATE)
  padded.set(data)
  padded[data.length] = padded[data.length]! ^ padByte
  padded[padded.length - 1] = padded[padded.length - 1]! ^ 0x80
  const state: bigint[] = new Array(25).fill(0n)
  for (let off = 0; off < padded.length; off += RATE) {
    for (let i = 0; i < RATE / 8; i++) state[i] = state[i]! ^ padded.readBigUInt64LE(off + i * 8)
    keccakF(state)
  }
  const out = Buffer.alloc(32)
  for (let i = 0; i < 4; i++) out.writeBigUInt64LE(state[i]!, i * 8)
  return out
}
