/**
 * One Chain's reconcile (docs/onex.md): the finalizer; the accounts' keys in the Secret
 * `<chain>-accounts` (made once; keys never logged); the genesis rendered, pushed through the
 * proxy as a Shoal tag and its digest in status; the image tag resolved to a digest through the
 * build-index; the genesis Miner (named after the chain, owned by it); the static-nodes
 * whitelist from the chain's Miners; conditions. On delete: the Miners it owns are deleted and
 * the finalizer waits until they are gone.
 */
import { Readable } from 'node:stream'
import type { ResourceStore } from '../../apiserver/store/types.js'
import type { BuildIndexClient } from '../../build-index/client/index.js'
import { Digest } from '../../core/index.js'
import { isShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { ProxyClient } from '../../proxy/client/index.js'
import {
  CHAIN_NAMESPACE,
  type Chain,
  ChainKind,
  type ChainStatusT,
  FINALIZER_CHAIN,
  FINALIZER_MINER,
  LABEL_CHAIN,
  type Miner,
  ONEX_API_VERSION,
  type Secret,
} from '../kinds.js'
import { generateAccount } from './accounts.js'
import { setCondition } from './conditions.js'
import type { OnexControlConfig } from './config.js'
import { renderGenesis } from './genesis.js'
import { ownedBy } from './minerset.js'
import { ChainDefinition, MinerDefinition, SecretDefinition } from './register.js'

export interface ChainDeps {
  store: ResourceStore
  proxy: ProxyClient
  buildIndex: BuildIndexClient
  config: OnexControlConfig
  logger: Logger
  now: Date
  /** Every Miner (all namespaces) and the Secrets of kube-system, as listed for this pass. */
  miners: Miner[]
  secrets: Secret[]
}

export const accountsSecretName = (chain: string) => `${chain}-accounts`

export function genesisTag(config: OnexControlConfig, chain: string, digest: Digest): string {
  return `${config.tagHost}-/onex/chains/${chain}-genesis.json:${digest.hex.slice(0, 16)}`
}

export function staticNodesOf(chainName: string, miners: Miner[]): string[] {
  const out = new Set<string>()
  for (const m of miners)
    if (m.metadata.labels[LABEL_CHAIN] === chainName && !m.metadata.deletionTimestamp)
      for (const a of m.status?.addresses ?? []) if (a.type === 'Enode') out.add(a.address)
  return [...out].sort()
}

const ownerRef = (chain: Chain) => ({
  apiVersion: ONEX_API_VERSION,
  kind: ChainKind.kind,
  name: chain.metadata.name,
  uid: chain.metadata.uid,
  controller: true,
})

export async function reconcileChain(chain: Chain, d: ChainDeps): Promise<void> {
  const { store } = d
  const name = chain.metadata.name
  const owned = d.miners.filter((m) => ownedBy(m, chain.metadata.uid))
  if (chain.metadata.deletionTimestamp) {
    for (const m of owned)
      if (!m.metadata.deletionTimestamp)
        await store.delete(MinerDefinition, m.metadata.namespace, m.metadata.name).catch(ignoreNotFound)
    if (owned.length === 0 && chain.metadata.finalizers.includes(FINALIZER_CHAIN))
      await store.update(ChainDefinition, CHAIN_NAMESPACE, {
        ...chain,
        metadata: {
          ...chain.metadata,
          finalizers: chain.metadata.finalizers.filter((f) => f !== FINALIZER_CHAIN),
        },
      })
    return
  }
  if (!chain.metadata.finalizers.includes(FINALIZER_CHAIN)) {
    await store.update(ChainDefinition, CHAIN_NAMESPACE, {
      ...chain,
      metadata: { ...chain.metadata, finalizers: [...chain.metadata.finalizers, FINALIZER_CHAIN] },
    })
    return // the update comes back as an event: the next pass goes on from there
  }

  const now = d.now
  const prev: ChainStatusT = chain.status ?? {}
  let status: ChainStatusT = { ...prev, observedGeneration: chain.metadata.generation }
  const cond = (type: string, ok: boolean, reason: string, message: string) => {
    status = {
      ...status,
      conditions: setCondition(
        status.conditions,
        { type, status: ok ? 'True' : 'False', reason, message },
        now,
      ),
    }
  }

  const accounts = await ensureAccounts(chain, d)
  status.accounts = accounts
  const type = d.config.minerTypes[chain.spec.minerType]
  if (!type)
    cond('GenesisReady', false, 'UnknownMinerType', `minerType "${chain.spec.minerType}" is not in the table`)
  else {
    const genesis = renderGenesis({ spec: chain.spec, accounts, difficulty: type.difficulty })
    const digest = Digest.fromBuffer(genesis)
    if (prev.genesisDigest !== digest.toString()) {
      try {
        const tag = genesisTag(d.config, name, digest)
        await d.proxy.pushBlob(d.config.namespace, digest, Readable.from([genesis]), genesis.length)
        await d.proxy.putTag(tag, digest, {
          ns: d.config.namespace === 'default' ? undefined : d.config.namespace,
        })
        status = { ...status, genesisDigest: digest.toString(), genesisTag: tag }
        d.logger.info({ chain: name, genesisDigest: digest.toString(), tag }, 'genesis pushed')
        cond('GenesisReady', true, 'Pushed', `genesis pushed as ${tag}`)
      } catch (err) {
        cond('GenesisReady', false, 'PushFailed', toShoalError(err).message.slice(0, 512))
      }
    }
  }
  try {
    status.imageDigest = (await d.buildIndex.getTag(chain.spec.image)).toString()
    cond('ImageResolved', true, 'Resolved', `${chain.spec.image} → ${status.imageDigest}`)
  } catch (err) {
    const e = toShoalError(err)
    cond(
      'ImageResolved',
      false,
      e.code === 'TAG_NOT_FOUND' ? 'TagNotFound' : 'ResolveFailed',
      e.message.slice(0, 512),
    )
  }

  const genesisMiner = d.miners.find(
    (m) => m.metadata.namespace === CHAIN_NAMESPACE && m.metadata.name === name,
  )
  if (genesisMiner) status.minerRef = { namespace: CHAIN_NAMESPACE, name, uid: genesisMiner.metadata.uid }
  else if (status.genesisDigest && status.imageDigest) {
    const m = await store.create(MinerDefinition, CHAIN_NAMESPACE, {
      apiVersion: ONEX_API_VERSION,
      kind: 'Miner',
      metadata: {
        name,
        labels: { [LABEL_CHAIN]: name },
        finalizers: [FINALIZER_MINER],
        ownerReferences: [ownerRef(chain)],
      },
      spec: { displayName: chain.spec.displayName ?? name, minerType: chain.spec.minerType, chainName: name },
    })
    status.minerRef = { namespace: CHAIN_NAMESPACE, name, uid: m.metadata.uid }
  }
  status.staticNodes = staticNodesOf(name, d.miners)
  const ready = Boolean(status.genesisDigest && status.imageDigest && status.minerRef)
  cond(
    'Ready',
    ready,
    ready ? 'Ready' : 'Provisioning',
    ready ? 'genesis pushed, image resolved, genesis Miner created' : 'not yet',
  )
  if (JSON.stringify(status) !== JSON.stringify(prev))
    await store.updateStatus(ChainDefinition, CHAIN_NAMESPACE, { ...chain, status })
}

/** The accounts' addresses, from the chain's Secret; the Secret is made on the first pass. */
async function ensureAccounts(chain: Chain, d: ChainDeps): Promise<string[]> {
  const secretName = accountsSecretName(chain.metadata.name)
  const existing = d.secrets.find((s) => s.metadata.name === secretName && ownedBy(s, chain.metadata.uid))
  if (existing) return Object.keys(existing.spec.data).sort()
  const data: Record<string, string> = {}
  for (let i = 0; i < chain.spec.genesis.accounts; i++) {
    const a = generateAccount()
    data[a.address] = a.privateKey
  }
  try {
    await d.store.create(SecretDefinition, CHAIN_NAMESPACE, {
      apiVersion: ONEX_API_VERSION,
      kind: 'Secret',
      metadata: { name: secretName, ownerReferences: [ownerRef(chain)] },
      spec: { type: 'onex.io/accounts', data },
    })
  } catch (err) {
    // A Secret of that name left by an earlier chain of the same name: its keys are not ours.
    if (!isShoalError(err, 'ALREADY_EXISTS')) throw err
    const old = (await d.store.get(SecretDefinition, CHAIN_NAMESPACE, secretName)) as Secret
    if (!ownedBy(old, chain.metadata.uid)) {
      await d.store.delete(SecretDefinition, CHAIN_NAMESPACE, secretName).catch(ignoreNotFound)
      throw toShoalError(err)
    }
    return Object.keys(old.spec.data).sort()
  }
  d.logger.info(
    { chain: chain.metadata.name, accounts: Object.keys(data).length, secret: secretName },
    'accounts made',
  )
  return Object.keys(data).sort()
}

export function ignoreNotFound(err: unknown): void {
  if (!isShoalError(err, 'NOT_FOUND')) throw err
}
