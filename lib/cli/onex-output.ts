/**
 * How `shoal onex get` prints OneX's resources: kubectl-style tables (one line per object, the
 * columns of its kind), or the objects as JSON or YAML (`-o json|yaml`; a list as a `List`).
 */
import { stringify } from 'yaml'
import type { Resource } from '../apiserver/types.js'
import type { Chain, Host, Miner, MinerSet } from '../onex/kinds.js'

export type OutputFormat = 'table' | 'json' | 'yaml'

export function age(created: string, now: number): string {
  const s = Math.max(0, Math.floor((now - Date.parse(created)) / 1000))
  if (s < 120) return `${s}s`
  if (s < 7200) return `${Math.floor(s / 60)}m`
  if (s < 172_800) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86_400)}d`
}

const cond = (o: Resource, type: string) =>
  ((o.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).find(
    (c) => c.type === type,
  )?.status ?? 'Unknown'

const short = (digest: string | undefined) =>
  digest ? digest.replace(/^sha256:/, '').slice(0, 12) : '<none>'

/** Columns by plural: header and cells. */
export const COLUMNS: Record<string, { head: string[]; row: (o: Resource, now: number) => string[] }> = {
  chains: {
    head: ['NAME', 'MINERTYPE', 'IMAGE', 'GENESIS', 'READY', 'AGE'],
    row: (o, now) => {
      const c = o as Chain
      return [
        c.metadata.name,
        c.spec.minerType,
        c.spec.image,
        short(c.status?.genesisDigest),
        cond(o, 'Ready'),
        age(c.metadata.creationTimestamp, now),
      ]
    },
  },
  minersets: {
    head: ['NAME', 'DESIRED', 'CURRENT', 'READY', 'AVAILABLE', 'POLICY', 'AGE'],
    row: (o, now) => {
      const s = o as MinerSet
      return [
        s.metadata.name,
        String(s.spec.replicas),
        String(s.status?.replicas ?? 0),
        String(s.status?.readyReplicas ?? 0),
        String(s.status?.availableReplicas ?? 0),
        s.spec.deletePolicy,
        age(s.metadata.creationTimestamp, now),
      ]
    },
  },
  miners: {
    head: ['NAME', 'CHAIN', 'TYPE', 'HOST', 'PHASE', 'AGE'],
    row: (o, now) => {
      const m = o as Miner
      const phase = m.metadata.deletionTimestamp ? 'Deleting' : (m.status?.phase ?? 'Pending')
      return [
        m.metadata.name,
        m.spec.chainName,
        m.spec.minerType,
        m.spec.hostName ?? '<none>',
        phase,
        age(m.metadata.creationTimestamp, now),
      ]
    },
  },
  hosts: {
    head: ['NAME', 'CPU(m)', 'MEMORY(MiB)', 'HEARTBEAT', 'AGE'],
    row: (o, now) => {
      const h = o as Host
      return [
        h.metadata.name,
        String(h.spec.capacity.cpuMillis),
        String(h.spec.capacity.memoryMiB),
        h.status?.heartbeatTime ? `${age(h.status.heartbeatTime, now)} ago` : '<never>',
        age(h.metadata.creationTimestamp, now),
      ]
    },
  },
}

/** Aligned columns (two spaces apart), the header first; `namespace` adds a NAMESPACE column. */
export function table(
  plural: string,
  items: Resource[],
  now: number,
  withNamespace = false,
  header = true,
): string[] {
  const cols = COLUMNS[plural]
  if (!cols) return items.map((o) => o.metadata.name)
  const rows = items.map((o) => [...(withNamespace ? [o.metadata.namespace] : []), ...cols.row(o, now)])
  const head = [...(withNamespace ? ['NAMESPACE'] : []), ...cols.head]
  const all = header ? [head, ...rows] : rows
  const widths = head.map((_, i) => Math.max(...[head, ...rows].map((r) => (r[i] ?? '').length)))
  return all.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  )
}

export function formatObjects(items: Resource[], format: 'json' | 'yaml', single: boolean): string {
  const value = single ? items[0] : { apiVersion: 'v1', kind: 'List', items }
  return format === 'json' ? JSON.stringify(value, null, 2) : stringify(value).trimEnd()
}
