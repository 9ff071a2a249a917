/**
 * The node half's agent path, all real: the example image tarball and a genesis file pushed
 * through a herd's proxy, a real agent pulls both by digest through the swarm (PullCLI's fetch
 * path: agentPullBlob), the runner verifies and unpacks them and runs the node, whose HTTP API
 * then serves the genesis balances. A digest nobody pushed fails the start with a clear error.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { AgentClient } from '../../lib/agent/client/index.js'
import { Digest } from '../../lib/core/index.js'
import { agentPullBlob, runMinerAssignment } from '../../lib/onex/node/agent.js'
import type { MinerNodeStatus } from '../../lib/onex/node/assignment.js'
import { genesisDoc, getJson, HUNDRED_ETH, packExampleImage, tempDir, until } from '../helpers/onex-node.js'
import { pushBytes, startHerdAndAgent } from '../helpers/pull-cluster.js'

t.test('an image and a genesis pushed through the herd, pulled by digest on an agent, run', async (t) => {
  const dir = await tempDir(t)
  const { herd, agent } = await startHerdAndAgent(t, dir)
  const image = await packExampleImage(join(dir, 'onex-node-image.tar'))
  const pushedImage = await pushBytes(herd, dir, 'onex-node-image.tar', image.bytes)
  t.equal(pushedImage.digest.toString(), image.digest, 'the pushed image has the packer digest')
  const { doc, addresses } = genesisDoc(10)
  const pushedGenesis = await pushBytes(herd, dir, 'genesis.json', Buffer.from(JSON.stringify(doc)))

  const reports: MinerNodeStatus[] = []
  const workDir = join(dir, 'onex')
  const runner = await runMinerAssignment(
    {
      name: 'chain-a',
      chainName: 'chain-a',
      imageDigest: image.digest,
      genesisDigest: pushedGenesis.digest.toString(),
      staticNodes: ['enode://chain-a@127.0.0.1:0'],
      mineIntervalMs: 100,
    },
    {
      config: { workDir, healthIntervalMs: 100 },
      pullBlob: agentPullBlob(agent.url),
      report: (s) => reports.push(s),
    },
  )
  t.teardown(() => runner.stop())

  // The agent downloaded both blobs through the swarm (its download records say so).
  const client = new AgentClient(agent.url)
  for (const digest of [image.digest, pushedGenesis.digest.toString()]) {
    const progress = await client.progress(Digest.parse(digest))
    t.match(progress, { state: /done|cached/ }, `the agent holds ${digest.slice(0, 19)}…`)
  }
  t.same(
    await readFile(join(workDir, 'miners/chain-a/genesis.json')),
    Buffer.from(JSON.stringify(doc)),
    'the genesis on disk is the pushed one',
  )
  await until('PodHealthy True', () =>
    runner.status.conditions.some((c) => c.type === 'PodHealthy' && c.status === 'True'),
  )
  const url = runner.status.addresses.find((a) => a.type === 'HTTP')?.address as string
  t.equal((await getJson(`${url}/balances/${addresses[9]}`)).body.balance, HUNDRED_ETH, 'the balances served')
  await until(
    'blocks mined',
    async () => (await getJson<{ number: number }>(`${url}/blocks/latest`)).body.number >= 2,
  )
  t.match(runner.status, { phase: 'Running', artifacts: { imageDigest: image.digest } })
  t.ok(reports.some((s) => s.phase === 'Provisioning'))

  // A digest that was never pushed: the start fails, says so, and nothing runs.
  const missing = `sha256:${'ab'.repeat(32)}`
  await t.rejects(
    runMinerAssignment(
      {
        name: 'chain-b',
        chainName: 'chain-b',
        imageDigest: missing,
        genesisDigest: pushedGenesis.digest.toString(),
      },
      { config: { workDir }, pullBlob: agentPullBlob(agent.url, { timeoutMs: 10_000 }) },
    ),
    { code: 'BLOB_NOT_FOUND', message: /blob not found/ },
  )
})
