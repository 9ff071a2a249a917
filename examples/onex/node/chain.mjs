/**
 * The chain of the example OneX node: the GoQuorum-format genesis file, blocks and their hashes,
 * and the checks a follower makes on every block it is offered. Plain Node.js, no dependencies.
 *
 * Block 0 is the genesis file itself: its hash is the sha256 of the file's bytes (the same hex
 * as the genesis digest Shoal distributes it under), so two nodes with different genesis files
 * disagree from block 0 and never exchange blocks.
 */
import { createHash } from 'node:crypto'

/** A genesis file larger than this is refused (GoQuorum's are a few KiB). */
export const MAX_GENESIS_BYTES = 1 << 20
/** More accounts than this in `alloc` is refused. */
export const MAX_ACCOUNTS = 10_000
const ADDRESS = /^(0x)?[0-9a-fA-F]{40}$/
const HASH = /^[0-9a-f]{64}$/
const NODE_ID = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/

export class ChainError extends Error {
  constructor(code, message) {
    super(message)
    this.code = code
  }
}

/** An address as the node keys it: lower case with 0x. */
export function normalizeAddress(value) {
  if (typeof value !== 'string' || !ADDRESS.test(value))
    throw new ChainError('BAD_ADDRESS', 'an address is 40 hex characters, with or without 0x')
  return (value.startsWith('0x') ? value : `0x${value}`).toLowerCase()
}

export function isNodeId(value) {
  return typeof value === 'string' && NODE_ID.test(value)
}

/** A balance in wei: a decimal string (GoQuorum's alloc) or 0x hex; a BigInt ≥ 0. */
function parseWei(value, where) {
  if (typeof value !== 'string' || !/^(0x[0-9a-fA-F]{1,64}|[0-9]{1,78})$/.test(value))
    throw new ChainError('BAD_GENESIS', `${where}: a balance is a decimal or 0x-hex string of wei`)
  return BigInt(value)
}

/**
 * Parses a genesis file (bytes): config.chainId, alloc {address: {balance}}, extraData... Returns
 * the chain id, the balances (Map address → BigInt wei) and the genesis hash.
 */
export function parseGenesis(bytes) {
  if (bytes.length > MAX_GENESIS_BYTES)
    throw new ChainError('BAD_GENESIS', `the genesis file is larger than ${MAX_GENESIS_BYTES} bytes`)
  let doc
  try {
    doc = JSON.parse(bytes.toString('utf8'))
  } catch (err) {
    throw new ChainError('BAD_GENESIS', `the genesis file is not JSON: ${err.message}`)
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
    throw new ChainError('BAD_GENESIS', 'the genesis file is not a JSON object')
  const chainId = doc.config?.chainId
  if (!Number.isSafeInteger(chainId) || chainId <= 0)
    throw new ChainError('BAD_GENESIS', 'config.chainId must be a positive integer')
  if (doc.alloc === null || typeof doc.alloc !== 'object' || Array.isArray(doc.alloc))
    throw new ChainError('BAD_GENESIS', 'alloc must be an object of address → {balance}')
  const entries = Object.entries(doc.alloc)
  if (entries.length > MAX_ACCOUNTS)
    throw new ChainError('BAD_GENESIS', `alloc holds more than ${MAX_ACCOUNTS} accounts`)
  const balances = new Map()
  for (const [address, account] of entries) {
    const key = normalizeAddress(address)
    balances.set(key, (balances.get(key) ?? 0n) + parseWei(account?.balance, `alloc.${address}`))
  }
  if (
    doc.extraData !== undefined &&
    (typeof doc.extraData !== 'string' || !/^0x[0-9a-fA-F]*$/.test(doc.extraData))
  )
    throw new ChainError('BAD_GENESIS', 'extraData must be a 0x-hex string')
  const hash = createHash('sha256').update(bytes).digest('hex')
  return { chainId, balances, hash, extraData: doc.extraData ?? '0x' }
}

export function genesisBlock(genesis) {
  return { number: 0, parentHash: '', timestamp: 0, producer: '', hash: genesis.hash }
}

/** The hash of a block: what it extends, where it is, when and by whom it was made, on which chain. */
export function blockHash(chainId, b) {
  return createHash('sha256')
    .update(`onex-block|${chainId}|${b.number}|${b.parentHash}|${b.timestamp}|${b.producer}`)
    .digest('hex')
}

export function makeBlock(chainId, parent, producer, timestamp) {
  // A clock that went back must not make a block older than its parent.
  const block = {
    number: parent.number + 1,
    parentHash: parent.hash,
    timestamp: Math.max(timestamp, parent.timestamp),
    producer,
  }
  return { ...block, hash: blockHash(chainId, block) }
}

/**
 * Checks that `block` (from a peer or from disk) extends `parent`: contiguous number, parent
 * link, no older than its parent, and its hash recomputed. Returns the block with only its own
 * fields; throws a ChainError saying what is wrong.
 */
export function verifyBlock(chainId, parent, block) {
  if (block === null || typeof block !== 'object') throw new ChainError('BAD_BLOCK', 'a block is an object')
  const { number, parentHash, timestamp, producer, hash } = block
  if (number !== parent.number + 1)
    throw new ChainError('BAD_BLOCK', `block ${number} does not follow block ${parent.number}`)
  if (parentHash !== parent.hash)
    throw new ChainError(
      'FORK',
      `block ${number}'s parent ${String(parentHash).slice(0, 12)} is not our block ${parent.number}`,
    )
  if (!Number.isSafeInteger(timestamp) || timestamp < parent.timestamp)
    throw new ChainError('BAD_BLOCK', `block ${number} has a bad timestamp`)
  if (!isNodeId(producer)) throw new ChainError('BAD_BLOCK', `block ${number} names no valid producer`)
  if (typeof hash !== 'string' || !HASH.test(hash) || hash !== blockHash(chainId, block))
    throw new ChainError('BAD_BLOCK', `block ${number}'s hash does not match its contents`)
  return { number, parentHash, timestamp, producer, hash }
}

/**
 * Parses a static-nodes file (GoQuorum's static-nodes.json: a JSON array of
 * `enode://<node id>@<host>:<port>` strings). Port 0 means "address not known yet": the node is
 * whitelisted but not dialled. The first entry is the producer (raft id 1, the genesis node).
 */
export function parseStaticNodes(bytes) {
  if (bytes.length > MAX_GENESIS_BYTES)
    throw new ChainError('BAD_STATIC_NODES', 'static-nodes file too large')
  let list
  try {
    list = JSON.parse(bytes.toString('utf8'))
  } catch (err) {
    throw new ChainError('BAD_STATIC_NODES', `static-nodes is not JSON: ${err.message}`)
  }
  if (!Array.isArray(list) || list.length > 1000)
    throw new ChainError('BAD_STATIC_NODES', 'static-nodes must be an array of at most 1000 enode URLs')
  const nodes = []
  for (const entry of list) {
    const m =
      typeof entry === 'string'
        ? /^enode:\/\/([^@]+)@([0-9A-Za-z.-]{1,253}|\[[0-9a-fA-F:]+\]):([0-9]{1,5})$/.exec(entry)
        : null
    if (!m || !isNodeId(m[1]) || Number(m[3]) > 65535)
      throw new ChainError(
        'BAD_STATIC_NODES',
        `not an enode URL (enode://<node id>@<host>:<port>): ${String(entry).slice(0, 80)}`,
      )
    if (nodes.some((n) => n.id === m[1]))
      throw new ChainError('BAD_STATIC_NODES', `node ${m[1]} is listed twice`)
    nodes.push({ id: m[1], host: m[2], port: Number(m[3]), url: entry })
  }
  return nodes
}
