/**
 * OneX's resources on the resource API (docs/onex.md): group apps.onex.io, version v1beta1, with
 * OneX's field names. Chain (in kube-system) makes a private genesis chain; MinerSet keeps N
 * Miners; a Miner is one node process on a Host; a Host is one agent's machine; a Secret holds a
 * chain's account keys. Shared by the control half (lib/onex/control) and the node half.
 */
import type { KindRef, Resource } from '../apiserver/types.js'
import { z } from '../config/index.js'

export const ONEX_GROUP = 'apps.onex.io'
export const ONEX_VERSION = 'v1beta1'
export const ONEX_API_VERSION = `${ONEX_GROUP}/${ONEX_VERSION}`
/** Chains live here (as in OneX). */
export const CHAIN_NAMESPACE = 'kube-system'
/** Hosts (one per agent, named after its host) live here too: a namespace stands in for cluster scope. */
export const HOST_NAMESPACE = 'kube-system'

export const LABEL_CHAIN = 'apps.onex.io/chain-name'
export const LABEL_MINERSET_NAME = 'apps.onex.io/minerset-name'
/** The label a MinerSet's selector is forced to: `apps.onex.io/minerset: <set name>`. */
export const LABEL_MINERSET = 'apps.onex.io/minerset'
export const ANNOTATION_DELETION_PROTECTION = 'apps.onex.io/deletion-protection'
/** A Miner annotated so is deleted first when its set shrinks (Random policy). */
export const ANNOTATION_DELETE_MINER = 'apps.onex.io/delete-miner'
export const FINALIZER_CHAIN = 'chain.onex.io/finalizer'
export const FINALIZER_MINER = 'miner.onex.io/finalizer'

const kind = (k: string, plural: string): KindRef => ({
  group: ONEX_GROUP,
  version: ONEX_VERSION,
  kind: k,
  plural,
})
export const ChainKind = kind('Chain', 'chains')
export const MinerSetKind = kind('MinerSet', 'minersets')
export const MinerKind = kind('Miner', 'miners')
export const HostKind = kind('Host', 'hosts')
export const SecretKind = kind('Secret', 'secrets')

const Text = z.string().max(253)
/** A Shoal tag (checked by the build-index when resolved). */
const TagText = z.string().min(1).max(512)
/** 0x and 40 hex digits. */
export const Address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'an Ethereum address: 0x and 40 hex digits')
/** Wei as a decimal string (balances overflow a JSON number). */
const Wei = z.string().regex(/^[0-9]{1,78}$/, 'wei as a decimal string')

export const Condition = z.strictObject({
  type: z.string().min(1).max(63),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().max(128).optional(),
  message: z.string().max(1024).optional(),
  lastTransitionTime: z.string().max(64).optional(),
})
export type ConditionT = z.infer<typeof Condition>
const Conditions = z.array(Condition).max(32).optional()

export const ChainSpec = z.strictObject({
  displayName: Text.optional(),
  minerType: z.string().min(1).max(63).default('S1.SMALL2'),
  /** The node image: a Shoal tag, resolved to a digest by the chain controller. */
  image: TagText,
  minMineIntervalSeconds: z.number().int().min(1).max(31_536_000).default(43200),
  /** Credited in the genesis besides the generated accounts. */
  bootstrapAccount: Address.optional(),
  genesis: z
    .strictObject({
      chainId: z
        .number()
        .int()
        .min(1)
        .max(2 ** 31)
        .default(1337),
      accounts: z.number().int().min(0).max(100).default(10),
      /** Per account, in wei: 100 ETH. */
      balance: Wei.default('100000000000000000000'),
    })
    .default({ chainId: 1337, accounts: 10, balance: '100000000000000000000' }),
})
export type ChainSpecT = z.infer<typeof ChainSpec>

export const ChainStatus = z.strictObject({
  imageDigest: z.string().max(80).optional(),
  genesisDigest: z.string().max(80).optional(),
  /** The Shoal tag the genesis file was pushed as. */
  genesisTag: z.string().max(512).optional(),
  /** The genesis Miner (same name as the chain). */
  minerRef: z.strictObject({ namespace: z.string(), name: z.string(), uid: z.string() }).optional(),
  /** The accounts credited by the genesis (their keys are in the Secret `<chain>-accounts`). */
  accounts: z.array(Address).max(101).optional(),
  /** The whitelist: enodes of the chain's Miners that report one, sorted. */
  staticNodes: z.array(z.string().max(512)).max(10_000).optional(),
  observedGeneration: z.number().int().optional(),
  conditions: Conditions,
})
export type ChainStatusT = z.infer<typeof ChainStatus>

export const MinerTemplateSpec = z.strictObject({
  displayName: Text.optional(),
  minerType: z.string().min(1).max(63).default('S1.SMALL1'),
  chainName: z.string().min(1).max(253),
  restartPolicy: z.enum(['Always', 'OnFailure', 'Never']).default('Always'),
  /** Seconds the node half gets to stop the process on delete before the finalizer is dropped anyway. */
  podDeletionTimeout: z.number().int().min(0).max(86_400).default(10),
  hostName: z.string().max(253).optional(),
})
export const MinerSpec = MinerTemplateSpec
export type MinerSpecT = z.infer<typeof MinerSpec>

export const MinerPhase = z.enum(['Pending', 'Provisioning', 'Running', 'Deleting', 'Failed', 'Unknown'])
export type MinerPhaseT = z.infer<typeof MinerPhase>

export const MinerStatus = z.strictObject({
  phase: MinerPhase.optional(),
  /** The node process on its host (written by the node half). */
  podRef: z.strictObject({ host: z.string().max(253), pid: z.number().int().min(0) }).optional(),
  addresses: z
    .array(z.strictObject({ type: z.string().max(32), address: z.string().max(512) }))
    .max(16)
    .optional(),
  artifacts: z
    .strictObject({
      imageDigest: z.string().max(80).optional(),
      genesisDigest: z.string().max(80).optional(),
      genesisTag: z.string().max(512).optional(),
    })
    .optional(),
  failureReason: z.string().max(128).optional(),
  failureMessage: z.string().max(1024).optional(),
  observedGeneration: z.number().int().optional(),
  conditions: Conditions,
})
export type MinerStatusT = z.infer<typeof MinerStatus>

const LabelMap = z.record(z.string().max(317), z.string().max(63))
export const MinerSetSpec = z.strictObject({
  replicas: z.number().int().min(0).max(10_000).default(1),
  /** Forced to `apps.onex.io/minerset: <name>` by the controller, whatever is written here. */
  selector: z.strictObject({ matchLabels: LabelMap.optional() }).optional(),
  template: z.strictObject({
    metadata: z.strictObject({ labels: LabelMap.optional(), annotations: LabelMap.optional() }).default({}),
    spec: MinerTemplateSpec,
  }),
  displayName: Text.optional(),
  deletePolicy: z.enum(['Random', 'Newest', 'Oldest']).default('Random'),
  minReadySeconds: z.number().int().min(0).max(86_400).default(0),
})
export type MinerSetSpecT = z.infer<typeof MinerSetSpec>

export const MinerSetStatus = z.strictObject({
  replicas: z.number().int().min(0).default(0),
  fullyLabeledReplicas: z.number().int().min(0).default(0),
  readyReplicas: z.number().int().min(0).default(0),
  availableReplicas: z.number().int().min(0).default(0),
  /** The forced selector as a labelSelector string (what /scale reports). */
  selector: z.string().max(1024).optional(),
  observedGeneration: z.number().int().optional(),
  failureReason: z.string().max(128).optional(),
  failureMessage: z.string().max(1024).optional(),
  conditions: Conditions,
})
export type MinerSetStatusT = z.infer<typeof MinerSetStatus>

export const HostSpec = z.strictObject({
  /** What the host offers miners, in the units of the minerType table. */
  capacity: z.strictObject({
    cpuMillis: z.number().int().min(0).max(10_000_000),
    memoryMiB: z.number().int().min(0).max(100_000_000),
  }),
  /** True: no new Miner is scheduled here. */
  unschedulable: z.boolean().default(false),
})
export type HostSpecT = z.infer<typeof HostSpec>

export const HostStatus = z.strictObject({
  /** The agent's last report (ISO time); a Host is Ready while it is recent. */
  heartbeatTime: z.string().max(64).optional(),
  addresses: z
    .array(z.strictObject({ type: z.string().max(32), address: z.string().max(512) }))
    .max(16)
    .optional(),
  conditions: Conditions,
})
export type HostStatusT = z.infer<typeof HostStatus>

/** A chain's account keys (hex private keys by address). Readable by any API reader: see docs/onex.md. */
export const SecretSpec = z.strictObject({
  type: z.string().max(63).default('onex.io/accounts'),
  data: z.record(z.string().max(64), z.string().max(4096)),
})
export type SecretSpecT = z.infer<typeof SecretSpec>

export type Chain = Resource<ChainSpecT, ChainStatusT>
export type MinerSet = Resource<MinerSetSpecT, MinerSetStatusT>
export type Miner = Resource<MinerSpecT, MinerStatusT>
export type Host = Resource<HostSpecT, HostStatusT>
export type Secret = Resource<SecretSpecT, undefined>
