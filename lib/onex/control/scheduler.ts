/**
 * Where a Miner runs: a Ready Host (recent heartbeat, not unschedulable) with room for the
 * Miner's type (cpu and memory of the Miners already bound there, from the minerType table),
 * spreading over hosts: fewest Miners first, then most free cpu, then by name.
 */
import type { Host, Miner } from '../kinds.js'
import type { MinerTypeResourcesT } from './config.js'

export function hostIsReady(host: Host, now: Date, staleSeconds: number): boolean {
  if (host.metadata.deletionTimestamp || host.spec.unschedulable) return false
  const beat = Date.parse(host.status?.heartbeatTime ?? '')
  return Number.isFinite(beat) && now.getTime() - beat <= staleSeconds * 1000
}

export function pickHost(
  miner: Miner,
  hosts: Host[],
  /** Every Miner (all namespaces): what is bound where. */
  miners: Miner[],
  types: Record<string, MinerTypeResourcesT>,
  now: Date,
  staleSeconds: number,
): string | undefined {
  const need = types[miner.spec.minerType]
  if (!need) return undefined
  const candidates = hosts
    .filter((h) => hostIsReady(h, now, staleSeconds))
    .map((h) => {
      const bound = miners.filter(
        (m) => m.spec.hostName === h.metadata.name && m.metadata.uid !== miner.metadata.uid,
      )
      let cpu = 0
      let mem = 0
      for (const m of bound) {
        cpu += types[m.spec.minerType]?.cpuMillis ?? 0
        mem += types[m.spec.minerType]?.memoryMiB ?? 0
      }
      return {
        name: h.metadata.name,
        count: bound.length,
        freeCpu: h.spec.capacity.cpuMillis - cpu,
        freeMem: h.spec.capacity.memoryMiB - mem,
      }
    })
    .filter((c) => c.freeCpu >= need.cpuMillis && c.freeMem >= need.memoryMiB)
  candidates.sort((a, b) => a.count - b.count || b.freeCpu - a.freeCpu || a.name.localeCompare(b.name))
  return candidates[0]?.name
}
