/** Kube-style conditions: set one, keeping lastTransitionTime while its status stays. */
import type { ConditionT } from '../kinds.js'

export function setCondition(list: ConditionT[] | undefined, next: ConditionT, now: Date): ConditionT[] {
  const old = (list ?? []).find((c) => c.type === next.type)
  const keep = old && old.status === next.status && old.lastTransitionTime
  const merged: ConditionT = {
    ...next,
    lastTransitionTime: keep ? old.lastTransitionTime : now.toISOString(),
  }
  return [...(list ?? []).filter((c) => c.type !== next.type), merged].sort((a, b) =>
    a.type.localeCompare(b.type),
  )
}

export function conditionOf(list: ConditionT[] | undefined, type: string): ConditionT | undefined {
  return list?.find((c) => c.type === type)
}

export function isTrue(list: ConditionT[] | undefined, type: string): boolean {
  return conditionOf(list, type)?.status === 'True'
}
