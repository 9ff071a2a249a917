#!/usr/bin/env node
/**
 * The example OneX chain node: reads a GoQuorum-format genesis file, credits its balances,
 * produces a block every --block-interval-ms when it is the producer (the first entry of its
 * static-nodes whitelist: raft id 1, the genesis node), otherwise follows: pulls blocks from its
 * whitelisted peers and verifies the hash chain. Serves blocks and balances over HTTP.
 *
 *   node node.mjs --node-id a --genesis genesis.json --static-nodes static-nodes.json \
 *     [--host 127.0.0.1] [--port 0] [--port-file f] [--data-dir d] [--block-interval-ms 1000]
 *
 * The static-nodes file is read again on every sync tick, so whoever runs the node can change
 * the peers (write a new file, rename it into place) without a restart. See docs/onex-node.md.
 */
import { appendFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { join } from 'node:path'
import {
  ChainError,
  genesisBlock,
  isNodeId,
  makeBlock,
  normalizeAddress,
  parseGenesis,
  parseStaticNodes,
  verifyBlock,
} from './chain.mjs'

const MAX_ANSWER_BYTES = 4 << 20
const MAX_BLOCKS_PER_ANSWER = 256
const PEER_TIMEOUT_MS = 3000

function parseArgs(argv) {
  const known = [
    'node-id',
    'genesis',
    'static-nodes',
    'host',
    'port',
    'port-file',
    'data-dir',
    'block-interval-ms',
  ]
  const out = { host: '127.0.0.1', port: '0', 'block-interval-ms': '1000' }
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '')
    if (!known.includes(key) || argv[i + 1] === undefined) fail(`unknown or incomplete option ${argv[i]}`)
    out[key] = argv[i + 1]
  }
  for (const key of ['node-id', 'genesis', 'static-nodes'])
    if (out[key] === undefined) fail(`--${key} is required`)
  if (!isNodeId(out['node-id'])) fail('--node-id: lower-case letters, digits, . and -, at most 63')
  const interval = Number(out['block-interval-ms'])
  if (!Number.isSafeInteger(interval) || interval < 10) fail('--block-interval-ms must be an integer ≥ 10')
  const port = Number(out.port)
  if (!Number.isSafeInteger(port) || port < 0 || port > 65535) fail('--port must be 0..65535')
  return { ...out, port, interval }
}

function fail(message) {
  process.stderr.write(`onex-node: ${message}\n`)
  process.exit(2)
}

const opts = parseArgs(process.argv.slice(2))
const nodeId = opts['node-id']
let genesis
try {
  genesis = parseGenesis(await readFile(opts.genesis))
} catch (err) {
  fail(`genesis ${opts.genesis}: ${err.message}`)
}
const chain = [genesisBlock(genesis)]
let staticNodes = []
let staticNodesError
/** What the last exchange with each peer gave: state, its height, the error. */
const peerStates = new Map()

async function readStaticNodes() {
  try {
    staticNodes = parseStaticNodes(await readFile(opts['static-nodes']))
    staticNodesError = undefined
  } catch (err) {
    // A missing or broken file keeps the list we had: a bad write must not cut the node off.
    staticNodesError = err.code === 'ENOENT' ? 'static-nodes file missing' : err.message
  }
}

const head = () => chain[chain.length - 1]
const producerId = () => staticNodes[0]?.id
const whitelisted = (id) => staticNodes.some((n) => n.id === id)

// --- persistence: one JSON line per block; a torn last line is dropped on load ---
const chainFile = opts['data-dir'] ? join(opts['data-dir'], 'chain.jsonl') : undefined
async function loadChain() {
  if (!chainFile) return
  await mkdir(opts['data-dir'], { recursive: true })
  const text = await readFile(chainFile, 'utf8').catch((err) =>
    err.code === 'ENOENT' ? '' : Promise.reject(err),
  )
  let kept = 0
  for (const line of text.split('\n')) {
    if (line === '') continue
    try {
      chain.push(verifyBlock(genesis.chainId, head(), JSON.parse(line)))
      kept++
    } catch {
      break
    }
  }
  // Rewrite what was kept, so appending after a torn line stays parseable.
  await writeFile(
    chainFile,
    chain
      .slice(1)
      .map((b) => `${JSON.stringify(b)}\n`)
      .join(''),
  )
  return kept
}

let appending = Promise.resolve()
function append(blocks) {
  for (const b of blocks) chain.push(b)
  if (chainFile) {
    const text = blocks.map((b) => `${JSON.stringify(b)}\n`).join('')
    appending = appending.then(() => appendFile(chainFile, text))
  }
}

// --- producing and following ---
function produce() {
  if (producerId() !== nodeId) return
  append([makeBlock(genesis.chainId, head(), nodeId, Date.now())])
}

async function fetchBounded(url) {
  const res = await fetch(url, {
    headers: { 'x-onex-node-id': nodeId, 'x-onex-genesis': genesis.hash },
    signal: AbortSignal.timeout(PEER_TIMEOUT_MS),
  })
  const chunks = []
  let size = 0
  for await (const chunk of res.body ?? []) {
    size += chunk.length
    if (size > MAX_ANSWER_BYTES)
      throw new ChainError('TOO_LARGE', `answer larger than ${MAX_ANSWER_BYTES} bytes`)
    chunks.push(chunk)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  let body
  try {
    body = JSON.parse(text)
  } catch {
    throw new ChainError('BAD_ANSWER', `HTTP ${res.status}, not JSON`)
  }
  return { status: res.status, body }
}

async function syncFrom(peer) {
  if (peer.id === nodeId) return
  if (peer.port === 0) {
    peerStates.set(peer.id, { state: 'unknown-address' })
    return
  }
  const host = peer.host.includes(':') && !peer.host.startsWith('[') ? `[${peer.host}]` : peer.host
  try {
    const { status, body } = await fetchBounded(
      `http://${host}:${peer.port}/p2p/blocks?from=${head().number + 1}&limit=${MAX_BLOCKS_PER_ANSWER}`,
    )
    if (status === 403 || status === 409) {
      peerStates.set(peer.id, { state: 'refused', error: String(body?.error ?? status).slice(0, 200) })
      return
    }
    if (status !== 200 || body?.nodeId !== peer.id || !Array.isArray(body.blocks))
      throw new ChainError('BAD_ANSWER', `HTTP ${status}, or not node ${peer.id}`)
    const taken = []
    let parent = head()
    for (const raw of body.blocks.slice(0, MAX_BLOCKS_PER_ANSWER)) {
      const block = verifyBlock(genesis.chainId, parent, raw)
      taken.push(block)
      parent = block
    }
    if (taken.length > 0) append(taken)
    peerStates.set(peer.id, { state: 'connected', height: Number(body.height) || 0 })
  } catch (err) {
    const state = err instanceof ChainError ? 'rejected' : 'unreachable'
    peerStates.set(peer.id, { state, error: String(err.message).slice(0, 200) })
  }
}

let syncing = false
async function syncTick() {
  if (syncing) return
  syncing = true
  try {
    await readStaticNodes()
    for (const id of peerStates.keys()) if (!whitelisted(id)) peerStates.delete(id)
    // Followers pull from every whitelisted peer (not only the producer), so a new node can catch
    // up from any of them; every block is verified against our own chain first.
    if (producerId() !== nodeId) for (const peer of staticNodes) await syncFrom(peer)
  } finally {
    syncing = false
  }
}

// --- HTTP ---
function send(res, status, body) {
  const text = JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))
  res.writeHead(status, { 'content-type': 'application/json', 'x-onex-node-id': nodeId })
  res.end(`${text}\n`)
}

function handle(req, res) {
  if (req.method !== 'GET') return send(res, 405, { error: 'only GET' })
  const url = new URL(req.url ?? '/', 'http://node')
  const path = url.pathname
  if (path === '/health')
    return send(res, 200, {
      ok: true,
      nodeId,
      chainId: genesis.chainId,
      genesisHash: genesis.hash,
      height: head().number,
      producer: producerId() ?? null,
      isProducer: producerId() === nodeId,
      ...(staticNodesError ? { staticNodesError } : {}),
    })
  if (path === '/blocks/latest') return send(res, 200, head())
  let m = /^\/blocks\/([0-9]{1,15})$/.exec(path)
  if (m) {
    const block = chain[Number(m[1])]
    return block
      ? send(res, 200, block)
      : send(res, 404, { error: `no block ${m[1]} yet (height ${head().number})` })
  }
  m = /^\/balances\/([^/]{1,64})$/.exec(path)
  if (m) {
    let address
    try {
      address = normalizeAddress(m[1])
    } catch (err) {
      return send(res, 400, { error: err.message })
    }
    return send(res, 200, { address, balance: genesis.balances.get(address) ?? 0n, block: head().number })
  }
  if (path === '/peers')
    return send(res, 200, {
      producer: producerId() ?? null,
      peers: staticNodes.map((n) => ({
        id: n.id,
        url: n.url,
        ...(n.id === nodeId ? { state: 'self' } : (peerStates.get(n.id) ?? { state: 'not-tried' })),
      })),
    })
  if (path === '/p2p/blocks') return serveBlocks(req, url, res)
  return send(res, 404, { error: 'no such route' })
}

/** Blocks for a peer: only for whitelisted node ids on the same genesis. */
function serveBlocks(req, url, res) {
  const peer = req.headers['x-onex-node-id']
  if (typeof peer !== 'string' || !whitelisted(peer) || peer === nodeId)
    return send(res, 403, {
      error: `node ${String(peer).slice(0, 63)} is not in this node's static-nodes whitelist`,
    })
  if (req.headers['x-onex-genesis'] !== genesis.hash)
    return send(res, 409, { error: 'another genesis: not the same chain' })
  const from = Number(url.searchParams.get('from') ?? '1')
  const limit = Math.min(
    Number(url.searchParams.get('limit') ?? MAX_BLOCKS_PER_ANSWER),
    MAX_BLOCKS_PER_ANSWER,
  )
  if (!Number.isSafeInteger(from) || from < 1 || !Number.isSafeInteger(limit) || limit < 1)
    return send(res, 400, { error: 'from ≥ 1 and limit ≥ 1 are integers' })
  return send(res, 200, { nodeId, height: head().number, blocks: chain.slice(from, from + limit) })
}

await loadChain()
await readStaticNodes()
const server = createServer(
  { requestTimeout: 10_000, headersTimeout: 5_000, maxHeaderSize: 8192 },
  (req, res) => {
    try {
      handle(req, res)
    } catch (err) {
      send(res, 500, { error: String(err?.message ?? err) })
    }
  },
)
server.keepAliveTimeout = 5000
await new Promise((resolve, reject) => {
  server.once('error', reject)
  server.listen(opts.port, opts.host, resolve)
})
const { port } = server.address()
if (opts['port-file']) {
  // Written whole then renamed: whoever polls for it never reads half a file.
  const tmp = `${opts['port-file']}.tmp`
  await writeFile(tmp, JSON.stringify({ host: opts.host, port, pid: process.pid, nodeId }))
  await rename(tmp, opts['port-file'])
}
process.stdout.write(
  `onex-node ${nodeId}: listening on http://${opts.host}:${port}, chain ${genesis.chainId}\n`,
)

const timers = [
  setInterval(produce, opts.interval),
  setInterval(() => void syncTick(), Math.min(opts.interval, 1000)),
]
void syncTick()

function shutdown() {
  for (const timer of timers) clearInterval(timer)
  server.close()
  server.closeAllConnections()
  appending.finally(() => process.exit(0))
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
