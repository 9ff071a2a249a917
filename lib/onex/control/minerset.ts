/**
 * The MinerSet algorithm (OneX's, after cluster-api's MachineSet), as a pure function: adopt
 * orphans that match the forced selector, create the missing Miners (`<set>-<5 chars>`), pick the
 * surplus by the delete policy, and count the status. The controller applies the plan.
 *
 * Delete policies, highest priority deleted first, ties by name:
 *  - Random: Miners annotated `apps.onex.io/delete-miner`, then failed ones (failureReason or
 *    phase Failed), then not Ready ones, then the rest in random order.
 *  - Oldest / Newest: annotated, then failed, then by creation time (oldest or newest first).
 */
import type { ResourceInput } from '../../apiserver/types.js'
import {
  ANNOTATION_DELETE_MINER,
  FINALIZER_MINER,
  LABEL_CHAIN,
  LABEL_MINERSET,
  LABEL_MINERSET_NAME,
  type Miner,
  type MinerSet,
  MinerSetKind,
  type MinerSetStatusT,
  type MinerSpecT,
  ONEX_API_VERSION,
} from '../kinds.js'
import { conditionOf, isTrue, setCondition } from './conditions.js'

export interface MinerSetPlan {
  /** Orphans to take: their ownerReferences get this set as controller. */
  adopt: Miner[]
  create: ResourceInput<MinerSpecT>[]
  remove: Miner[]
  status: MinerSetStatusT
}

/** The alphabet of kube's generated name suffixes (no vowels, no look-alikes). */
const SUFFIX_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'

export function minerSetSelector(set: MinerSet): Record<string, string> {
  return { [LABEL_MINERSET]: set.metadata.name }
}

export function ownedBy(obj: { metadata: Miner['metadata'] }, uid: string): boolean {
  return obj.metadata.ownerReferences.some((r) => r.controller && r.uid === uid)
}

function matches(labels: Record<string, string>, selector: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v)
}

export function planMinerSet(
  set: MinerSet,
  /** The Miners of the set's namespace. */
  miners: Miner[],
  now: Date,
  random: () => number = Math.random,
): MinerSetPlan {
  const selector = minerSetSelector(set)
  const uid = set.metadata.uid
  const adopt = miners.filter(
    (m) =>
      !m.metadata.deletionTimestamp &&
      !m.metadata.ownerReferences.some((r) => r.controller) &&
      matches(m.metadata.labels, selector),
  )
  const active = [...miners.filter((m) => ownedBy(m, uid)), ...adopt].filter(
    (m) => !m.metadata.deletionTimestamp,
  )
  const want = set.metadata.deletionTimestamp ? active.length : set.spec.replicas
  const diff = want - active.length
  const taken = new Set(miners.map((m) => m.metadata.name))
  const create: ResourceInput<MinerSpecT>[] = []
  for (let i = 0; i < diff; i++) {
    const name = freshName(set.metadata.name, taken, random)
    taken.add(name)
    create.push(minerFromTemplate(set, name))
  }
  const remove = diff < 0 ? pickSurplus(active, -diff, set.spec.deletePolicy, now, random) : []
  return { adopt, create, remove, status: countStatus(set, active, now) }
}

function freshName(set: string, taken: Set<string>, random: () => number): string {
  for (;;) {
    let s = ''
    for (let i = 0; i < 5; i++) s += SUFFIX_ALPHABET[Math.floor(random() * SUFFIX_ALPHABET.length)]
    const name = `${set.slice(0, 57)}-${s}`
    if (!taken.has(name)) return name
  }
}

export function minerFromTemplate(set: MinerSet, name: string): ResourceInput<MinerSpecT> {
  const t = set.spec.template
  return {
    apiVersion: ONEX_API_VERSION,
    kind: 'Miner',
    metadata: {
      name,
      namespace: set.metadata.namespace,
      labels: {
        ...(t.metadata.labels ?? {}),
        ...minerSetSelector(set),
        [LABEL_MINERSET_NAME]: set.metadata.name,
        [LABEL_CHAIN]: t.spec.chainName,
      },
      annotations: { ...(t.metadata.annotations ?? {}) },
      finalizers: [FINALIZER_MINER],
      ownerReferences: [
        {
          apiVersion: ONEX_API_VERSION,
          kind: MinerSetKind.kind,
          name: set.metadata.name,
          uid: set.metadata.uid,
          controller: true,
        },
      ],
    },
    spec: { ...t.spec },
  }
}

/** `count` Miners of `active` to delete, in the order the policy deletes them. */
export function pickSurplus(
  active: Miner[],
  count: number,
  policy: MinerSet['spec']['deletePolicy'],
  now: Date,
  random: () => number = Math.random,
): Miner[] {
  const age = (m: Miner) => now.getTime() - Date.parse(m.metadata.creationTimestamp)
  const scored = active.map((m) => {
    let priority: number
    if (m.metadata.annotations[ANNOTATION_DELETE_MINER] !== undefined) priority = 3e15
    else if (m.status?.failureReason || m.status?.failureMessage || m.status?.phase === 'Failed')
      priority = 2e15
    else if (policy === 'Random') priority = isTrue(m.status?.conditions, 'Ready') ? random() : 1e15
    else priority = policy === 'Oldest' ? age(m) : -age(m)
    return { m, priority }
  })
  scored.sort((a, b) => b.priority - a.priority || a.m.metadata.name.localeCompare(b.m.metadata.name))
  return scored.slice(0, count).map((s) => s.m)
}

function countStatus(set: MinerSet, active: Miner[], now: Date): MinerSetStatusT {
  const templateLabels = set.spec.template.metadata.labels ?? {}
  const ready = active.filter((m) => isTrue(m.status?.conditions, 'Ready'))
  const available = ready.filter((m) => {
    const since = Date.parse(conditionOf(m.status?.conditions, 'Ready')?.lastTransitionTime ?? '')
    return Number.isFinite(since) && now.getTime() - since >= set.spec.minReadySeconds * 1000
  })
  const want = set.spec.replicas
  const n = active.length
  return {
    ...set.status,
    replicas: n,
    fullyLabeledReplicas: active.filter((m) => matches(m.metadata.labels, templateLabels)).length,
    readyReplicas: ready.length,
    availableReplicas: available.length,
    selector: `${LABEL_MINERSET}=${set.metadata.name}`,
    observedGeneration: set.metadata.generation,
    conditions: setCondition(
      set.status?.conditions,
      n === want
        ? { type: 'Resized', status: 'True', reason: 'Resized', message: `${n} Miners` }
        : {
            type: 'Resized',
            status: 'False',
            reason: n < want ? 'ScalingUp' : 'ScalingDown',
            message: `${n} of ${want} Miners`,
          },
      now,
    ),
  }
}
