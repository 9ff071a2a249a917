/**
 * The Miner's control-side lifecycle as a pure function: the finalizer on a live Miner, a host
 * for an unbound one, the phase the control side owns (Pending until bound, Provisioning until
 * the node half reports), the chain's artifacts in status, and on delete: wait for the node half
 * to stop the process (podRef cleared) at most podDeletionTimeout seconds, then drop the
 * finalizer.
 */
import type { Chain, Host, Miner, MinerStatusT } from '../kinds.js'
import { FINALIZER_MINER } from '../kinds.js'
import { setCondition } from './conditions.js'
import type { MinerTypeResourcesT } from './config.js'
import { pickHost } from './scheduler.js'

export type MinerStep =
  | { type: 'addFinalizer' }
  | { type: 'releaseFinalizer'; reason: 'stopped' | 'timeout' }
  | { type: 'bind'; hostName: string; status: MinerStatusT }
  | { type: 'status'; status: MinerStatusT }
  | { type: 'none' }

export interface MinerWorld {
  chain: Chain | undefined
  hosts: Host[]
  miners: Miner[]
  types: Record<string, MinerTypeResourcesT>
  hostStaleSeconds: number
  now: Date
}

export function planMiner(miner: Miner, w: MinerWorld): MinerStep {
  const status = miner.status ?? {}
  const deleting = miner.metadata.deletionTimestamp
  if (deleting) {
    if (!miner.metadata.finalizers.includes(FINALIZER_MINER)) return { type: 'none' }
    if (!status.podRef) return { type: 'releaseFinalizer', reason: 'stopped' }
    const waited = w.now.getTime() - Date.parse(deleting)
    if (waited >= miner.spec.podDeletionTimeout * 1000) return { type: 'releaseFinalizer', reason: 'timeout' }
    return status.phase === 'Deleting'
      ? { type: 'none' }
      : { type: 'status', status: { ...status, phase: 'Deleting' } }
  }
  if (!miner.metadata.finalizers.includes(FINALIZER_MINER)) return { type: 'addFinalizer' }

  // observedGeneration is the node half's: it is the one acting on the spec.
  let next: MinerStatusT = { ...status }
  const chainStatus = w.chain?.status
  if (chainStatus?.imageDigest && chainStatus.genesisDigest)
    next.artifacts = {
      imageDigest: chainStatus.imageDigest,
      genesisDigest: chainStatus.genesisDigest,
      ...(chainStatus.genesisTag ? { genesisTag: chainStatus.genesisTag } : {}),
    }
  if (!w.types[miner.spec.minerType]) {
    next = {
      ...next,
      phase: 'Failed',
      failureReason: 'UnknownMinerType',
      failureMessage: `minerType "${miner.spec.minerType}" is not in the minerType table`,
    }
    return changed(status, next) ? { type: 'status', status: next } : { type: 'none' }
  }
  if (!miner.spec.hostName) {
    const host = pickHost(miner, w.hosts, w.miners, w.types, w.now, w.hostStaleSeconds)
    if (host) {
      const bound: MinerStatusT = {
        ...next,
        phase: 'Provisioning',
        conditions: setCondition(
          next.conditions,
          { type: 'Scheduled', status: 'True', reason: 'Scheduled', message: `on ${host}` },
          w.now,
        ),
      }
      return { type: 'bind', hostName: host, status: bound }
    }
    next = {
      ...next,
      phase: 'Pending',
      conditions: setCondition(
        next.conditions,
        {
          type: 'Scheduled',
          status: 'False',
          reason: 'Unschedulable',
          message: 'no Ready Host has room for this minerType',
        },
        w.now,
      ),
    }
  } else if (!next.phase || next.phase === 'Pending') next = { ...next, phase: 'Provisioning' }
  return changed(status, next) ? { type: 'status', status: next } : { type: 'none' }
}

function changed(a: MinerStatusT, b: MinerStatusT): boolean {
  return JSON.stringify(a) !== JSON.stringify(b)
}
