/**
 * The onex plugin's control half in a herd (real resource API, proxy, origin, build-index on
 * loopback): a Chain gets its genesis pushed through Shoal and its genesis Miner; a MinerSet keeps
 * its Miners, scheduled over Hosts the test creates (agents do not report Hosts yet); /scale
 * resizes it and each delete policy removes the Miners it should; deletion protection answers
 * 403; deleting a MinerSet cascades; deleting a Chain waits for its Miners to stop.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { ResourceClient } from '../../lib/apiserver/client/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { Digest } from '../../lib/core/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import { HerdConfigSchema } from '../../lib/herd/config.js'
import { type Herd, startHerd } from '../../lib/herd/index.js'
import { HttpClient } from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { accountOf } from '../../lib/onex/control/accounts.js'
import {
  ANNOTATION_DELETE_MINER,
  ANNOTATION_DELETION_PROTECTION,
  CHAIN_NAMESPACE,
  ChainKind,
  type ChainSpecT,
  type ChainStatusT,
  HOST_NAMESPACE,
  HostKind,
  type HostSpecT,
  type HostStatusT,
  LABEL_MINERSET,
  type Miner,
  MinerKind,
  MinerSetKind,
  type MinerSetSpecT,
  type MinerSetStatusT,
  type MinerSpecT,
  type MinerStatusT,
  SecretKind,
  type SecretSpecT,
} from '../../lib/onex/kinds.js'
import { ProxyClient } from '../../lib/proxy/client/index.js'
import { until } from '../helpers/jobs.js'

const NS = 'default'
const IMAGE_TAG = 'build-/onex/images-node.tar:v1'
const BOOTSTRAP = '0x00000000000000000000000000000000000000b0'

async function onexHerd(t: { teardown(fn: () => unknown): void }): Promise<Herd> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-onex-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const herd = await startHerd(
    validateConfig(HerdConfigSchema, {
      dataDir: join(dir, 'herd'),
      bindHost: '127.0.0.1',
      basePort: 0,
      log: { level: 'silent' },
      plugins: { onex: { resyncSeconds: 0.2 } },
    }),
    { logger: silentLogger() },
  )
  t.teardown(() => herd.stop())
  return herd
}

function clients(herd: Herd) {
  const url = herd.urls.apiserver as string
  return {
    url,
    chains: new ResourceClient<ChainSpecT, ChainStatusT>(url, ChainKind),
    sets: new ResourceClient<MinerSetSpecT, MinerSetStatusT>(url, MinerSetKind),
    miners: new ResourceClient<MinerSpecT, MinerStatusT>(url, MinerKind),
    hosts: new ResourceClient<HostSpecT, HostStatusT>(url, HostKind),
    secrets: new ResourceClient<SecretSpecT>(url, SecretKind),
  }
}

/** Pushes a small "image" and tags it, as the image script would. */
async function pushImage(herd: Herd): Promise<Digest> {
  const bytes = Buffer.from('not really a tarball: the node half is another part of the issue\n')
  const digest = Digest.fromBuffer(bytes)
  const proxy = new ProxyClient(herd.urls.proxy)
  await proxy.pushBlob('default', digest, Readable.from([bytes]), bytes.length)
  await proxy.putTag(IMAGE_TAG, digest)
  return digest
}

async function addHosts(c: ReturnType<typeof clients>, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const h = await c.hosts.create(HOST_NAMESPACE, {
      metadata: { name: `host-${i}` },
      spec: { capacity: { cpuMillis: 4000, memoryMiB: 8192 }, unschedulable: false },
    })
    await c.hosts.updateStatus(HOST_NAMESPACE, {
      ...h,
      status: { heartbeatTime: new Date(Date.now() + 3600_000).toISOString() },
    })
  }
}

const setMiners = async (c: ReturnType<typeof clients>, set: string): Promise<Miner[]> =>
  (await c.miners.list(NS, { labelSelector: `${LABEL_MINERSET}=${set}` })).items as Miner[]

async function createChain(c: ReturnType<typeof clients>, name: string) {
  return c.chains.create(CHAIN_NAMESPACE, {
    metadata: { name },
    spec: { image: IMAGE_TAG, bootstrapAccount: BOOTSTRAP } as ChainSpecT,
  })
}

t.test('a Chain: accounts, genesis pushed through Shoal, image digest, the genesis Miner', async (t) => {
  const herd = await onexHerd(t)
  const c = clients(herd)
  const image = await pushImage(herd)
  await createChain(c, 'alpha')
  const chain = await until('chain ready', async () => {
    const ch = await c.chains.get(CHAIN_NAMESPACE, 'alpha')
    return ch.status?.genesisDigest && ch.status.minerRef ? ch : undefined
  })
  t.equal(chain.status?.imageDigest, image.toString(), 'the image tag resolved to its digest')
  t.ok(chain.metadata.finalizers.includes('chain.onex.io/finalizer'))
  const miner = await c.miners.get(CHAIN_NAMESPACE, 'alpha')
  t.same(
    miner.metadata.ownerReferences.map((r) => [r.kind, r.name, r.uid, r.controller]),
    [['Chain', 'alpha', chain.metadata.uid, true]],
    'the genesis Miner is owned by the chain',
  )
  t.equal(miner.spec.minerType, 'S1.SMALL2', "the chain's minerType (OneX's default)")

  // The genesis as the swarm serves it: its digest is the chain's, its content GoQuorum's.
  const tag = chain.status?.genesisTag as string
  const viaTag = await new ProxyClient(herd.urls.proxy).getTag(tag)
  t.equal(viaTag.toString(), chain.status?.genesisDigest, 'the tag points at the genesis digest')
  const res = await new HttpClient(herd.urls.origin, { name: 'origin' }).request(
    'GET',
    `/namespace/default/blobs/${chain.status?.genesisDigest}`,
  )
  const bytes = Buffer.from(await res.body.arrayBuffer())
  t.equal(Digest.fromBuffer(bytes).toString(), chain.status?.genesisDigest, 'sha256 of the bytes')
  const genesis = JSON.parse(bytes.toString('utf8'))
  t.equal(genesis.config.isQuorum, true)
  t.equal(genesis.config.chainId, 1337)
  for (const fork of ['homesteadBlock', 'eip150Block', 'eip155Block', 'eip158Block', 'byzantiumBlock'])
    t.equal(genesis.config[fork], 0, `${fork} at 0`)
  const alloc = genesis.alloc as Record<string, { balance: string }>
  t.equal(Object.keys(alloc).length, 11, '10 generated accounts and the bootstrap account')
  for (const a of Object.values(alloc)) t.equal(a.balance, '100000000000000000000', '100 ETH in wei')
  t.ok(alloc[BOOTSTRAP.slice(2)], 'the bootstrap account is credited')

  // The keys: in the Secret, each deriving the address the genesis credits.
  const secret = await c.secrets.get(CHAIN_NAMESPACE, 'alpha-accounts')
  const keys = Object.entries(secret.spec.data)
  t.equal(keys.length, 10)
  for (const [address, key] of keys) {
    t.equal(accountOf(key).address, address, 'the key derives its address')
    t.ok(alloc[address.slice(2)], 'the genesis credits it')
  }
  t.same(chain.status?.accounts, keys.map(([a]) => a).sort())

  // The whitelist follows the Miners' reported enodes.
  const enode = `enode://${'ab'.repeat(64)}@127.0.0.1:30303`
  await c.miners.patch(
    CHAIN_NAMESPACE,
    'alpha',
    { status: { addresses: [{ type: 'Enode', address: enode }] } },
    { status: true },
  )
  await until('whitelisted', async () =>
    (await c.chains.get(CHAIN_NAMESPACE, 'alpha')).status?.staticNodes?.includes(enode),
  )
  await c.miners.patch(CHAIN_NAMESPACE, 'alpha', { status: { addresses: [] } }, { status: true })
  await until(
    'no longer whitelisted',
    async () => (await c.chains.get(CHAIN_NAMESPACE, 'alpha')).status?.staticNodes?.length === 0,
  )
  t.pass('static nodes follow the Miners')

  // The plugin counts its passes on the daemon's registry (the proxy's /metrics in a herd).
  const metrics = await new HttpClient(herd.urls.proxy, { name: 'proxy' }).request('GET', '/metrics')
  t.match(await metrics.body.text(), /shoal_onex_reconcile_passes_total\{[^}]*\} [1-9]/)
})

t.test('MinerSets: scheduling, /scale, delete policies, protection and cascade', async (t) => {
  const herd = await onexHerd(t)
  const c = clients(herd)
  await pushImage(herd)
  await createChain(c, 'beta')
  await addHosts(c, 3)
  const template = { metadata: { labels: { app: 'node' } }, spec: { chainName: 'beta' } as MinerSpecT }
  await c.sets.create(NS, {
    metadata: { name: 'web' },
    spec: { replicas: 3, template } as unknown as MinerSetSpecT,
  })

  const three = await until('3 Miners and the genesis Miner bound', async () => {
    const ms = await setMiners(c, 'web')
    const genesis = await c.miners.get(CHAIN_NAMESPACE, 'beta').catch(() => undefined)
    // Bound is two writes (spec.hostName, then the status): wait for both.
    const bound = (m: Miner | undefined) => Boolean(m?.spec.hostName && m.status?.phase === 'Provisioning')
    return ms.length === 3 && ms.every(bound) && bound(genesis as Miner | undefined) ? ms : undefined
  })
  // With the chain's genesis Miner that makes 4 Miners on 3 Hosts: spread, 2 on one at most.
  const all = [...three, await c.miners.get(CHAIN_NAMESPACE, 'beta')]
  const perHost = new Map<string, number>()
  for (const m of all)
    perHost.set(m.spec.hostName as string, (perHost.get(m.spec.hostName as string) ?? 0) + 1)
  t.same([...perHost.values()].sort(), [1, 1, 2], 'spread over the Hosts')
  for (const m of three) {
    t.match(m.metadata.name, /^web-[bcdfghjklmnpqrstvwxz2456789]{5}$/, 'named <set>-<5 chars>')
    t.equal(m.status?.phase, 'Provisioning', 'bound, waiting for the node half')
    t.equal(m.metadata.labels['apps.onex.io/chain-name'], 'beta')
    t.equal(m.metadata.labels.app, 'node', "the template's labels")
  }
  const status = await until('status counted', async () => {
    const s = await c.sets.get(NS, 'web')
    return s.status?.replicas === 3 ? s.status : undefined
  })
  t.equal(status.fullyLabeledReplicas, 3)
  t.equal(status.conditions?.find((x) => x.type === 'Resized')?.status, 'True')

  // /scale answers a Scale and resizes through spec.replicas.
  const http = new HttpClient(c.url, { name: 'apiserver' })
  const scalePath = `/apis/apps.onex.io/v1beta1/namespaces/${NS}/minersets/web/scale`
  const scale = await http.json<{ kind: string; spec: { replicas: number }; status: { selector: string } }>(
    'GET',
    scalePath,
  )
  t.equal(scale.kind, 'Scale')
  t.equal(scale.spec.replicas, 3)
  t.equal(scale.status.selector, `${LABEL_MINERSET}=web`)
  await http.json('PUT', scalePath, { json: { spec: { replicas: 5 } } })
  const five = await until('5 Miners', async () => {
    const ms = await setMiners(c, 'web')
    return ms.length === 5 && ms.every((m) => m.spec.hostName) ? ms : undefined
  })
  t.equal(five.length, 5)
  const bad = await http.request('PUT', scalePath, {
    body: JSON.stringify({ spec: { replicas: -1 } }),
    headers: { 'content-type': 'application/json' },
    accept: [422],
  })
  t.equal(bad.statusCode, 422, 'a negative scale is refused')
  await bad.body.dump()

  // Random: the annotated and the failed Miners go first, then by name.
  const [first, second] = five
  await c.miners.patch(NS, first!.metadata.name, {
    metadata: { annotations: { [ANNOTATION_DELETE_MINER]: 'yes' } },
  })
  await c.miners.patch(
    NS,
    second!.metadata.name,
    { status: { failureReason: 'Crashed', phase: 'Failed' } },
    { status: true },
  )
  await c.sets.patch(NS, 'web', { spec: { replicas: 2 } })
  const left = await until('2 Miners left (finalizers released)', async () => {
    const ms = await setMiners(c, 'web')
    return ms.length === 2 ? ms : undefined
  })
  const expectedLeft = five
    .filter((m) => m !== first && m !== second)
    .map((m) => m.metadata.name)
    .sort()
    .slice(1)
  t.same(left.map((m) => m.metadata.name).sort(), expectedLeft, 'Random: annotated, failed, then by name')

  // Deletion protection: 403 until the annotation goes; then the delete cascades.
  await c.sets.patch(NS, 'web', { metadata: { annotations: { [ANNOTATION_DELETION_PROTECTION]: 'true' } } })
  const refused = await c.sets.delete(NS, 'web').then(
    () => undefined,
    (err) => err,
  )
  t.ok(isShoalError(refused, 'FORBIDDEN'), `403: ${refused?.message}`)
  t.equal(refused?.status, 403)
  t.ok(await c.sets.get(NS, 'web'), 'still there')
  await c.sets.patch(NS, 'web', { metadata: { annotations: { [ANNOTATION_DELETION_PROTECTION]: null } } })
  await c.sets.delete(NS, 'web')
  await until('its Miners are gone', async () => (await c.miners.list(NS)).items.length === 0)
  t.pass('deleting a MinerSet deletes its Miners')
})

for (const policy of ['Oldest', 'Newest'] as const)
  t.test(`scale 5 → 2 with deletePolicy ${policy}`, async (t) => {
    const herd = await onexHerd(t)
    const c = clients(herd)
    await pushImage(herd)
    await createChain(c, 'gamma')
    await addHosts(c, 3)
    const template = { metadata: {}, spec: { chainName: 'gamma' } as MinerSpecT }
    await c.sets.create(NS, {
      metadata: { name: 'p' },
      spec: { replicas: 2, deletePolicy: policy, template } as MinerSetSpecT,
    })
    // Three generations of Miners, so creation times differ.
    for (const n of [2, 3, 5]) {
      await c.sets.patch(NS, 'p', { spec: { replicas: n } })
      await until(`${n} Miners`, async () => (await setMiners(c, 'p')).length === n)
    }
    const five = await setMiners(c, 'p')
    await c.sets.patch(NS, 'p', { spec: { replicas: 2 } })
    const left = await until('2 left', async () => {
      const ms = await setMiners(c, 'p')
      return ms.length === 2 ? ms : undefined
    })
    // The expected survivors from the observed creation times: the policy deletes the oldest
    // (or newest) first, ties by name.
    const byAge = [...five].sort(
      (a, b) =>
        Date.parse(a.metadata.creationTimestamp) - Date.parse(b.metadata.creationTimestamp) ||
        (policy === 'Oldest' ? 1 : -1) * a.metadata.name.localeCompare(b.metadata.name),
    )
    const survivors = policy === 'Oldest' ? byAge.slice(3) : byAge.slice(0, 2)
    t.same(left.map((m) => m.metadata.name).sort(), survivors.map((m) => m.metadata.name).sort())
  })

t.test('deleting a Chain waits until its Miners have stopped', async (t) => {
  const herd = await onexHerd(t)
  const c = clients(herd)
  await pushImage(herd)
  await createChain(c, 'delta')
  await addHosts(c, 1)
  const bound = await until('genesis Miner bound', async () => {
    const m = await c.miners.get(CHAIN_NAMESPACE, 'delta').catch(() => undefined)
    return m?.spec.hostName && m.status?.phase === 'Provisioning' ? m : undefined
  })
  t.ok(bound.status?.artifacts?.genesisDigest, 'the Miner carries the artifacts the node half pulls')
  // The node half's report: a running process.
  await c.miners.patch(
    CHAIN_NAMESPACE,
    'delta',
    { status: { phase: 'Running', podRef: { host: 'host-0', pid: 4242 } } },
    { status: true },
  )
  const protectedMiner = await c.miners.patch(CHAIN_NAMESPACE, 'delta', {
    spec: { podDeletionTimeout: 3600 },
  })
  t.equal(protectedMiner.spec.podDeletionTimeout, 3600)
  await c.chains.delete(CHAIN_NAMESPACE, 'delta')
  const deleting = await until('the Miner is Deleting', async () => {
    const m = await c.miners.get(CHAIN_NAMESPACE, 'delta')
    return m.metadata.deletionTimestamp && m.status?.phase === 'Deleting' ? m : undefined
  })
  t.ok(deleting.metadata.finalizers.includes('miner.onex.io/finalizer'), 'held while its process runs')
  const chain = await c.chains.get(CHAIN_NAMESPACE, 'delta')
  t.ok(chain.metadata.deletionTimestamp, 'the Chain is held too')
  // The node half stopped the process.
  await c.miners.patch(
    CHAIN_NAMESPACE,
    'delta',
    { status: { podRef: null, phase: 'Deleting' } },
    { status: true },
  )
  await until('Miner and Chain gone', async () => {
    const gone = (p: Promise<unknown>) =>
      p.then(
        () => false,
        (e) => isShoalError(e, 'NOT_FOUND'),
      )
    return (
      (await gone(c.miners.get(CHAIN_NAMESPACE, 'delta'))) &&
      (await gone(c.chains.get(CHAIN_NAMESPACE, 'delta')))
    )
  })
  await until('the Secret is collected', async () =>
    c.secrets.get(CHAIN_NAMESPACE, 'delta-accounts').then(
      () => false,
      (e) => isShoalError(e, 'NOT_FOUND'),
    ),
  )
  t.pass('finalizers cleared in order')
})

t.test('a MinerSet whose Miners the API refuses says so, and blocks no other set', async (t) => {
  const herd = await onexHerd(t)
  const c = clients(herd)
  await pushImage(herd)
  await createChain(c, 'eps')
  await addHosts(c, 1)
  // A label value the API refuses (spaces): the set's schema takes it, the Miner's create does not.
  const bad = { metadata: { labels: { tier: 'not a label value' } }, spec: { chainName: 'eps' } }
  await c.sets.create(NS, {
    metadata: { name: 'bad' },
    spec: { replicas: 1, template: bad } as unknown as MinerSetSpecT,
  })
  await c.sets.create(NS, {
    metadata: { name: 'good' },
    spec: { replicas: 2, template: { metadata: {}, spec: { chainName: 'eps' } } } as unknown as MinerSetSpecT,
  })
  const failed = await until('failure recorded', async () => {
    const s = await c.sets.get(NS, 'bad')
    return s.status?.failureReason ? s.status : undefined
  })
  t.equal(failed.failureReason, 'INVALID')
  t.match(failed.failureMessage, /label/)
  await until('the other set has its Miners', async () => (await setMiners(c, 'good')).length === 2)
  t.equal((await setMiners(c, 'bad')).length, 0)
})
