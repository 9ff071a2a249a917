/**
 * OneX's reconcile functions, pure: the MinerSet plan (adopt, create, surplus by policy, status),
 * the scheduler (ready hosts, room, spread), a Miner's control-side steps (finalizer, binding,
 * deletion within podDeletionTimeout), the genesis (GoQuorum's fields) and the whitelist.
 */
import t from 'tap'
import type { ObjectMeta } from '../../lib/apiserver/types.js'
import { staticNodesOf } from '../../lib/onex/control/chain.js'
import { DEFAULT_MINER_TYPES } from '../../lib/onex/control/config.js'
import { renderGenesis } from '../../lib/onex/control/genesis.js'
import { planMiner } from '../../lib/onex/control/miner.js'
import { pickSurplus, planMinerSet } from '../../lib/onex/control/minerset.js'
import { pickHost } from '../../lib/onex/control/scheduler.js'
import {
  ANNOTATION_DELETE_MINER,
  ChainSpec,
  FINALIZER_MINER,
  type Host,
  LABEL_MINERSET,
  type Miner,
  type MinerSet,
  MinerSetSpec,
  MinerSpec,
} from '../../lib/onex/kinds.js'

const NOW = new Date('2026-12-06T12:00:00.000Z')
const ago = (s: number) => new Date(NOW.getTime() - s * 1000).toISOString()

function meta(name: string, extra: Partial<ObjectMeta> = {}): ObjectMeta {
  return {
    name,
    namespace: 'default',
    uid: `uid-${name}`,
    labels: {},
    annotations: {},
    resourceVersion: '1',
    generation: 1,
    creationTimestamp: ago(100),
    finalizers: [],
    ownerReferences: [],
    ...extra,
  }
}

function set(replicas: number, deletePolicy: 'Random' | 'Oldest' | 'Newest' = 'Random'): MinerSet {
  return {
    apiVersion: 'apps.onex.io/v1beta1',
    kind: 'MinerSet',
    metadata: meta('s'),
    spec: MinerSetSpec.parse({
      replicas,
      deletePolicy,
      template: { metadata: { labels: { app: 'x' } }, spec: { chainName: 'c' } },
    }),
  }
}

function miner(
  name: string,
  opts: {
    owned?: boolean
    age?: number
    labels?: Record<string, string>
    ready?: boolean
    host?: string
    type?: string
  } = {},
): Miner {
  return {
    apiVersion: 'apps.onex.io/v1beta1',
    kind: 'Miner',
    metadata: meta(name, {
      creationTimestamp: ago(opts.age ?? 50),
      labels: opts.labels ?? { [LABEL_MINERSET]: 's', app: 'x' },
      finalizers: [FINALIZER_MINER],
      ownerReferences:
        opts.owned === false
          ? []
          : [
              {
                apiVersion: 'apps.onex.io/v1beta1',
                kind: 'MinerSet',
                name: 's',
                uid: 'uid-s',
                controller: true,
              },
            ],
    }),
    spec: MinerSpec.parse({ chainName: 'c', hostName: opts.host, minerType: opts.type }),
    status: opts.ready
      ? { phase: 'Running', conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: ago(30) }] }
      : {},
  }
}

function host(name: string, opts: { beat?: number; cpu?: number; unschedulable?: boolean } = {}): Host {
  return {
    apiVersion: 'apps.onex.io/v1beta1',
    kind: 'Host',
    metadata: meta(name),
    spec: {
      capacity: { cpuMillis: opts.cpu ?? 2000, memoryMiB: 4096 },
      unschedulable: opts.unschedulable ?? false,
    },
    status: { heartbeatTime: ago(opts.beat ?? 5) },
  }
}

t.test('planMinerSet creates the missing Miners from the template, named <set>-<5 chars>', async (t) => {
  const plan = planMinerSet(set(3), [miner('s-aaaaa')], NOW)
  t.equal(plan.create.length, 2)
  for (const m of plan.create) {
    t.match(m.metadata.name, /^s-[bcdfghjklmnpqrstvwxz2456789]{5}$/)
    t.equal(m.metadata.labels?.[LABEL_MINERSET], 's', 'the forced selector label')
    t.equal(m.metadata.labels?.app, 'x', "the template's labels")
    t.same(m.metadata.finalizers, [FINALIZER_MINER])
    t.equal(m.metadata.ownerReferences?.[0]?.uid, 'uid-s')
  }
  t.equal(plan.status.replicas, 1)
  t.equal(plan.status.conditions?.[0]?.reason, 'ScalingUp')
})

t.test('planMinerSet adopts an orphan that matches the selector and ignores others', async (t) => {
  const orphan = miner('s-orphn', { owned: false })
  const stranger = miner('other', { owned: false, labels: { [LABEL_MINERSET]: 'other' } })
  const plan = planMinerSet(set(1), [orphan, stranger], NOW)
  t.same(
    plan.adopt.map((m) => m.metadata.name),
    ['s-orphn'],
  )
  t.equal(plan.create.length, 0, 'the orphan counts as one of the replicas')
  t.equal(plan.status.conditions?.[0]?.status, 'True', 'Resized')
})

t.test('pickSurplus: Random takes annotated, then failed, then not Ready, ties by name', async (t) => {
  const a = miner('a', { ready: true })
  const b = miner('b', { ready: true })
  const c = miner('c', { ready: false })
  const d = miner('d', { ready: true })
  d.metadata.annotations[ANNOTATION_DELETE_MINER] = ''
  const e = miner('e', { ready: true })
  e.status = { ...e.status, failureReason: 'Crashed' }
  const order = pickSurplus([a, b, c, d, e], 3, 'Random', NOW, () => 0.5).map((m) => m.metadata.name)
  t.same(order, ['d', 'e', 'c'])
  const tie = pickSurplus([b, a], 1, 'Random', NOW, () => 0.5)
  t.equal(tie[0]?.metadata.name, 'a', 'equal priorities: by name')
})

t.test('pickSurplus: Oldest and Newest by age, annotated first, ties by name', async (t) => {
  const old = miner('old', { age: 300 })
  const mid1 = miner('mid1', { age: 200 })
  const mid2 = miner('mid2', { age: 200 })
  const young = miner('young', { age: 10 })
  t.same(
    pickSurplus([young, mid2, mid1, old], 2, 'Oldest', NOW).map((m) => m.metadata.name),
    ['old', 'mid1'],
  )
  t.same(
    pickSurplus([old, mid1, mid2, young], 2, 'Newest', NOW).map((m) => m.metadata.name),
    ['young', 'mid1'],
  )
  old.metadata.annotations[ANNOTATION_DELETE_MINER] = 'yes'
  t.same(
    pickSurplus([old, mid1, young], 1, 'Newest', NOW).map((m) => m.metadata.name),
    ['old'],
    'annotated first whatever the policy',
  )
})

t.test('planMinerSet status: ready and available (minReadySeconds), fully labeled', async (t) => {
  const s = set(3)
  s.spec.minReadySeconds = 60
  const ready = miner('s-ready', { ready: true }) // Ready for 30 s: not yet available
  const ms = [ready, miner('s-notre'), miner('s-nolab', { labels: { [LABEL_MINERSET]: 's' } })]
  const st = planMinerSet(s, ms, NOW).status
  t.equal(st.replicas, 3)
  t.equal(st.readyReplicas, 1)
  t.equal(st.availableReplicas, 0)
  t.equal(st.fullyLabeledReplicas, 2)
  s.spec.minReadySeconds = 10
  t.equal(planMinerSet(s, ms, NOW).status.availableReplicas, 1)
})

t.test('pickHost: ready hosts with room, fewest Miners first', async (t) => {
  const types = DEFAULT_MINER_TYPES
  const m = miner('new')
  const hosts = [host('h1'), host('h2'), host('stale', { beat: 3600 }), host('off', { unschedulable: true })]
  t.equal(pickHost(m, hosts, [miner('x', { host: 'h1' })], types, NOW, 60), 'h2', 'spread')
  t.equal(pickHost(m, hosts, [], types, NOW, 60), 'h1', 'ties by name')
  const full = [1, 2, 3, 4].map((i) => miner(`f${i}`, { host: 'h1' }))
  t.equal(pickHost(m, [host('h1')], full, types, NOW, 60), undefined, 'no room: 4 × 500 m of 2000 m')
  t.equal(
    pickHost(m, [host('stale', { beat: 3600 })], [], types, NOW, 60),
    undefined,
    'a stale host is not Ready',
  )
  t.equal(
    pickHost(miner('big', { type: 'M1.MEDIUM2' }), [host('h1')], [], types, NOW, 60),
    undefined,
    'too big',
  )
})

t.test('planMiner: finalizer, binding, phases, deletion within podDeletionTimeout', async (t) => {
  const world = {
    chain: undefined,
    hosts: [host('h1')],
    miners: [],
    types: DEFAULT_MINER_TYPES,
    hostStaleSeconds: 60,
    now: NOW,
  }
  const bare = miner('m')
  bare.metadata.finalizers = []
  t.same(planMiner(bare, world), { type: 'addFinalizer' })
  const step = planMiner(miner('m'), world)
  t.equal(step.type, 'bind')
  t.equal(step.type === 'bind' && step.hostName, 'h1')
  t.equal(step.type === 'bind' && step.status.phase, 'Provisioning')
  const pending = planMiner(miner('m'), { ...world, hosts: [] })
  t.equal(pending.type === 'status' && pending.status.phase, 'Pending')
  const unknown = planMiner(miner('m', { type: 'X.HUGE' }), world)
  t.equal(unknown.type === 'status' && unknown.status.failureReason, 'UnknownMinerType')

  const del = miner('m', { host: 'h1' })
  del.metadata.deletionTimestamp = ago(5)
  t.same(planMiner(del, world), { type: 'releaseFinalizer', reason: 'stopped' }, 'no process: released')
  del.status = { phase: 'Running', podRef: { host: 'h1', pid: 1 } }
  t.equal(
    planMiner(del, world).type === 'status' &&
      (planMiner(del, world) as { status: { phase: string } }).status.phase,
    'Deleting',
  )
  del.spec.podDeletionTimeout = 5
  t.same(planMiner(del, world), { type: 'releaseFinalizer', reason: 'timeout' }, 'timed out: released')
})

t.test('renderGenesis: GoQuorum fields, alloc, deterministic', async (t) => {
  const spec = ChainSpec.parse({
    image: 'a-/b-c:1',
    bootstrapAccount: '0x00000000000000000000000000000000000000B0',
  })
  const accounts = [
    '0x2b5ad5c4795c026514f8317c7a215e218dccd6cf',
    '0x7e5f4552091a69125d5dfcb7b8c2659029395bdf',
  ]
  const a = renderGenesis({ spec, accounts, difficulty: 2 })
  t.same(
    a,
    renderGenesis({ spec, accounts: [...accounts].reverse(), difficulty: 2 }),
    'same bytes whatever the order',
  )
  const g = JSON.parse(a.toString())
  t.equal(g.config.isQuorum, true)
  t.equal(g.config.chainId, 1337)
  t.equal(g.config.istanbulBlock, 0)
  t.equal(g.difficulty, '0x2')
  t.equal(g.gasLimit, '0xE0000000')
  t.match(g.extraData, /^0x0{64}$/)
  t.same(Object.keys(g.alloc), [
    '00000000000000000000000000000000000000b0',
    '2b5ad5c4795c026514f8317c7a215e218dccd6cf',
    '7e5f4552091a69125d5dfcb7b8c2659029395bdf',
  ])
  t.equal(g.alloc['2b5ad5c4795c026514f8317c7a215e218dccd6cf'].balance, '100000000000000000000')
})

t.test('staticNodesOf: enodes of the chain’s live Miners, sorted, once', async (t) => {
  const m1 = miner('a', { labels: { 'apps.onex.io/chain-name': 'c' } })
  m1.status = {
    addresses: [
      { type: 'Enode', address: 'enode://b@h:1' },
      { type: 'HTTP', address: 'http://h:2' },
    ],
  }
  const m2 = miner('b', { labels: { 'apps.onex.io/chain-name': 'c' } })
  m2.status = { addresses: [{ type: 'Enode', address: 'enode://a@h:1' }] }
  const gone = miner('d', { labels: { 'apps.onex.io/chain-name': 'c' } })
  gone.metadata.deletionTimestamp = ago(1)
  gone.status = { addresses: [{ type: 'Enode', address: 'enode://z@h:1' }] }
  const other = miner('e', { labels: { 'apps.onex.io/chain-name': 'other' } })
  other.status = { addresses: [{ type: 'Enode', address: 'enode://o@h:1' }] }
  t.same(staticNodesOf('c', [m1, m2, gone, other]), ['enode://a@h:1', 'enode://b@h:1'])
})
