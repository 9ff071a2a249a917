/**
 * A binary min-heap of groups keyed by the start tag of their first waiting flow. Each group
 * knows its index, so a change of head is an O(log n) sift, and nothing is allocated once the
 * array has grown to the number of torrents that wait at once.
 */
import type { Group } from './limiter.js'

function key(g: Group): number {
  return g.head!.start
}

export class GroupHeap {
  private readonly items: Group[] = []

  get size(): number {
    return this.items.length
  }

  top(): Group | undefined {
    return this.items[0]
  }

  push(g: Group): void {
    g.heapIndex = this.items.length
    this.items.push(g)
    this.up(g.heapIndex)
  }

  remove(g: Group): void {
    const i = g.heapIndex
    if (i < 0) return
    g.heapIndex = -1
    const last = this.items.pop()!
    if (last === g) return
    this.items[i] = last
    last.heapIndex = i
    this.update(last)
  }

  /** The group's key changed (its head did). */
  update(g: Group): void {
    this.up(g.heapIndex)
    this.down(g.heapIndex)
  }

  private up(i: number): void {
    const items = this.items
    const g = items[i]!
    const k = key(g)
    while (i > 0) {
      const p = (i - 1) >> 1
      const parent = items[p]!
      if (key(parent) <= k) break
      items[i] = parent
      parent.heapIndex = i
      i = p
    }
    items[i] = g
    g.heapIndex = i
  }

  private down(i: number): void {
    const items = this.items
    const n = items.length
    const g = items[i]!
    const k = key(g)
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const c = r < n && key(items[r]!) < key(items[l]!) ? r : l
      const child = items[c]!
      if (key(child) >= k) break
      items[i] = child
      child.heapIndex = i
      i = c
    }
    items[i] = g
    g.heapIndex = i
  }
}
