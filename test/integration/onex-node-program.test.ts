/**
 * The example OneX chain node (examples/onex/node) as real processes on loopback: it serves the
 * genesis balances, three nodes agree on every block hash (one producer, followers verify the
 * chain), a node outside a peer's static-nodes whitelist is refused and never gets a block, and a
 * node on another genesis is refused too. The image packer gives the same digest for the same
 * program.
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import {
  getJson,
  HUNDRED_ETH,
  type NodeProc,
  packExampleImage,
  startNodeProgram,
  tempDir,
  until,
  writeGenesis,
  writeStaticNodes,
} from '../helpers/onex-node.js'

type PeerState = { id: string; state: string; error?: string }
type Block = { number: number; hash: string; parentHash: string; producer: string }

async function height(n: NodeProc): Promise<number> {
  return (await getJson<Block>(`${n.url}/blocks/latest`)).body.number
}

t.test('one node: the genesis balances, block 0 = the genesis file, blocks produced', async (t) => {
  const dir = await tempDir(t)
  const genesis = join(dir, 'genesis.json')
  const addresses = await writeGenesis(genesis, 10)
  const sn = join(dir, 'static-nodes.json')
  await writeStaticNodes(sn, [{ id: 'solo', port: 0 }])
  const node = await startNodeProgram(t, { dir, id: 'solo', genesis, staticNodes: sn })

  for (const address of addresses) {
    const { status, body } = await getJson(`${node.url}/balances/${address}`)
    t.equal(status, 200)
    t.equal(body.balance, HUNDRED_ETH, `${address} holds 100 ETH`)
  }
  // Without 0x and in upper case: the same account (GoQuorum writes alloc keys either way).
  t.equal(
    (await getJson(`${node.url}/balances/${addresses[0]?.slice(2).toUpperCase()}`)).body.balance,
    HUNDRED_ETH,
  )
  t.equal((await getJson(`${node.url}/balances/0x${'9'.repeat(40)}`)).body.balance, '0', 'unknown account: 0')
  t.equal((await getJson(`${node.url}/balances/not-an-address`)).status, 400, 'garbage address: 400')

  const fileHash = createHash('sha256')
    .update(await readFile(genesis))
    .digest('hex')
  t.equal((await getJson<Block>(`${node.url}/blocks/0`)).body.hash, fileHash, 'block 0 is the genesis file')
  const health = (await getJson(`${node.url}/health`)).body
  t.match(health, { ok: true, nodeId: 'solo', chainId: 1337, isProducer: true, genesisHash: fileHash })
  await until('blocks are produced', async () => (await height(node)) >= 3)
  t.equal((await getJson(`${node.url}/blocks/999999`)).status, 404, 'a block not made yet: 404')
})

t.test('three nodes agree on the block hashes; a node outside the whitelist is refused', async (t) => {
  const dir = await tempDir(t)
  const genesis = join(dir, 'genesis.json')
  await writeGenesis(genesis, 10)
  const sn = join(dir, 'static-nodes.json')
  const ids = ['n1', 'n2', 'n3']
  await writeStaticNodes(
    sn,
    ids.map((id) => ({ id, port: 0 })),
  )
  const nodes: NodeProc[] = []
  for (const id of ids) nodes.push(await startNodeProgram(t, { dir, id, genesis, staticNodes: sn }))
  // Their ports are the kernel's: the whitelist gets them once all listen (read again each tick).
  await writeStaticNodes(sn, nodes)

  await until('the followers reach height 8', async () => {
    for (const n of nodes) if ((await height(n)) < 8) return false
    return true
  })
  for (let i = 1; i <= 8; i++) {
    const hashes = await Promise.all(
      nodes.map(async (n) => (await getJson<Block>(`${n.url}/blocks/${i}`)).body),
    )
    t.same(new Set(hashes.map((b) => b.hash)).size, 1, `block ${i}: one hash on all three`)
    t.equal(hashes[0]?.producer, 'n1', `block ${i} was made by the first static node`)
  }
  const peers = (await getJson<{ peers: { id: string; state: string }[] }>(`${nodes[2]?.url}/peers`)).body
    .peers
  t.match(
    peers.find((p) => p.id === 'n1'),
    { state: 'connected' },
    'n3 syncs from n1',
  )

  // An intruder that lists n1 as its producer, but is in nobody's whitelist.
  const intruderList = join(dir, 'intruder-nodes.json')
  await writeStaticNodes(intruderList, [nodes[0] as NodeProc, { id: 'intruder', port: 0 }])
  const intruder = await startNodeProgram(t, { dir, id: 'intruder', genesis, staticNodes: intruderList })
  await until('n1 refuses the intruder', async () => {
    const list = (await getJson<{ peers: PeerState[] }>(`${intruder.url}/peers`)).body.peers
    const n1 = list.find((p) => p.id === 'n1')
    return n1?.state === 'refused' && /whitelist/.test(n1.error ?? '')
  })
  t.equal(await height(intruder), 0, 'the intruder got no block')
  const direct = await fetch(`${nodes[0]?.url}/p2p/blocks?from=1`, {
    headers: { 'x-onex-node-id': 'intruder' },
  })
  t.equal(direct.status, 403, 'a peer request from a node not whitelisted: 403')
  await direct.body?.cancel()

  // A whitelisted id on another genesis (another chain) is refused as well.
  const otherGenesis = join(dir, 'other-genesis.json')
  await writeGenesis(otherGenesis, 10, 4242)
  await writeStaticNodes(sn, [...nodes, { id: 'stranger', port: 0 }])
  const strangerList = join(dir, 'stranger-nodes.json')
  await writeStaticNodes(strangerList, [nodes[0] as NodeProc, { id: 'stranger', port: 0 }])
  const stranger = await startNodeProgram(t, {
    dir,
    id: 'stranger',
    genesis: otherGenesis,
    staticNodes: strangerList,
  })
  await until('n1 refuses the node on another genesis', async () => {
    const list = (await getJson<{ peers: PeerState[] }>(`${stranger.url}/peers`)).body.peers
    const n1 = list.find((p) => p.id === 'n1')
    return n1?.state === 'refused' && /another genesis/.test(n1.error ?? '')
  })
  t.equal(await height(stranger), 0, 'the stranger got no block')
})

t.test('the image packer is deterministic', async (t) => {
  const dir = await tempDir(t)
  const a = await packExampleImage(join(dir, 'a.tar'))
  const b = await packExampleImage(join(dir, 'b.tar'))
  t.match(a.digest, /^sha256:[0-9a-f]{64}$/)
  t.equal(a.digest, b.digest, 'same program, same digest')
  t.equal(a.bytes.length % 512, 0, 'whole tar blocks')
  const names = a.bytes.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '')
  t.equal(names, 'chain.mjs', 'entries sorted by name')
})

t.test('a follower refuses blocks that do not verify, even from its whitelisted producer', async (t) => {
  const dir = await tempDir(t)
  const genesis = join(dir, 'genesis.json')
  await writeGenesis(genesis, 10)
  const genesisHash = createHash('sha256')
    .update(await readFile(genesis))
    .digest('hex')
  // A "producer" that answers with a block whose hash does not match its contents.
  const forged = { number: 1, parentHash: genesisHash, timestamp: 1, producer: 'liar', hash: 'f'.repeat(64) }
  const liar = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ nodeId: 'liar', height: 1, blocks: [forged] }))
  })
  await new Promise<void>((resolve) => liar.listen(0, '127.0.0.1', resolve))
  t.teardown(() => liar.close())
  const sn = join(dir, 'static-nodes.json')
  await writeStaticNodes(sn, [
    { id: 'liar', port: (liar.address() as AddressInfo).port },
    { id: 'follower', port: 0 },
  ])
  const follower = await startNodeProgram(t, { dir, id: 'follower', genesis, staticNodes: sn })
  const state = await until('the follower rejects the forged block', async () => {
    const list = (await getJson<{ peers: PeerState[] }>(`${follower.url}/peers`)).body.peers
    const p = list.find((x) => x.id === 'liar')
    return p?.state === 'rejected' ? p : undefined
  })
  t.match(state.error, /hash does not match/)
  t.equal(await height(follower), 0, 'the forged block was not taken')
})
