/**
 * A chain's accounts: secp256k1 key pairs from node:crypto and their Ethereum addresses
 * (last 20 bytes of Keccak-256 of the uncompressed public key without its 0x04 prefix).
 * Private keys go only into the chain's Secret, never into logs, events or statuses.
 */
import { createECDH } from 'node:crypto'
import { keccak256 } from './keccak.js'

export interface Account {
  /** 0x + 40 lower-case hex digits. */
  address: string
  /** 64 hex digits, no 0x. Secret. */
  privateKey: string
}

export function addressOfPublicKey(uncompressed: Buffer): string {
  return `0x${keccak256(uncompressed.subarray(1)).subarray(12).toString('hex')}`
}

/** The account of a given private key (hex, 64 digits). */
export function accountOf(privateKeyHex: string): Account {
  const ecdh = createECDH('secp256k1')
  ecdh.setPrivateKey(Buffer.from(privateKeyHex, 'hex'))
  return { address: addressOfPublicKey(ecdh.getPublicKey()), privateKey: privateKeyHex }
}

export function generateAccount(): Account {
  const ecdh = createECDH('secp256k1')
  ecdh.generateKeys()
  return {
    address: addressOfPublicKey(ecdh.getPublicKey()),
    privateKey: ecdh.getPrivateKey('hex').padStart(64, '0'),
  }
}
