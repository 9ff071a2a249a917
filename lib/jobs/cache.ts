/**
 * The controller's copy of the Distributions and their tasks, kept from the list and the
 * watches and from the answers to its own writes. An object only replaces a newer one never:
 * a watch event can arrive after the answer to a later write of the same object.
 */
import type { Resource } from '../apiserver/types.js'
import type { Distribution, DistributionTask } from './kinds.js'

const keyOf = (o: { metadata: { namespace: string; name: string } }) =>
  `${o.metadata.namespace}/${o.metadata.name}`

function newer(a: Resource | undefined, b: Resource): boolean {
  if (!a) return true
  try {
    return BigInt(b.metadata.resourceVersion) >= BigInt(a.metadata.resourceVersion)
  } catch {
    return true
  }
}

export class ResourceCache {
  private readonly dists = new Map<string, Distribution>()
  private readonly tasks = new Map<string, DistributionTask>()
  /** Distribution key → the keys of the tasks that name it. */
  private readonly byDist = new Map<string, Set<string>>()

  /** Returns the Distribution key to reconcile. */
  putDistribution(d: Distribution): string {
    const key = keyOf(d)
    if (newer(this.dists.get(key), d)) this.dists.set(key, d)
    return key
  }

  deleteDistribution(d: { metadata: { namespace: string; name: string } }): string {
    const key = keyOf(d)
    this.dists.delete(key)
    return key
  }

  /** Returns the key of the Distribution the task belongs to. */
  putTask(t: DistributionTask): string {
    const key = keyOf(t)
    const old = this.tasks.get(key)
    if (!newer(old, t)) return distKey(old as DistributionTask)
    if (old) this.byDist.get(distKey(old))?.delete(key)
    this.tasks.set(key, t)
    const dk = distKey(t)
    const set = this.byDist.get(dk) ?? new Set<string>()
    this.byDist.set(dk, set)
    set.add(key)
    return dk
  }

  /** Returns the key of the Distribution the task belonged to (undefined: it was unknown). */
  deleteTask(t: { metadata: { namespace: string; name: string } }): string | undefined {
    const key = keyOf(t)
    const old = this.tasks.get(key)
    if (!old) return undefined
    this.tasks.delete(key)
    const dk = distKey(old)
    const set = this.byDist.get(dk)
    set?.delete(key)
    if (set?.size === 0) this.byDist.delete(dk)
    return dk
  }

  distribution(key: string): Distribution | undefined {
    return this.dists.get(key)
  }

  tasksOf(key: string): DistributionTask[] {
    return [...(this.byDist.get(key) ?? [])].map((k) => this.tasks.get(k) as DistributionTask)
  }

  /** Every Distribution, and every Distribution name that tasks point at (orphans to clean). */
  distributionKeys(): string[] {
    return [...new Set([...this.dists.keys(), ...this.byDist.keys()])]
  }
}

function distKey(t: DistributionTask): string {
  return `${t.metadata.namespace}/${t.spec.distribution}`
}
