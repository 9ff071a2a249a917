/**
 * The simulator's clock and event queue: a binary min-heap of (time, sequence, action) in
 * parallel arrays, so events at the same time run in the order they were scheduled (messages
 * on one connection stay in order). Time is in milliseconds, the engine's unit.
 */
export type Action = () => void | Promise<void>

export class EventQueue {
  /** The time of the event being run (ms since the simulation started). */
  now = 0
  /** Events run so far. */
  ran = 0
  private readonly times: number[] = []
  private readonly seqs: number[] = []
  private readonly actions: Action[] = []
  private seq = 0

  get size(): number {
    return this.times.length
  }

  /** Runs `action` `delayMs` from now (never in the past). */
  after(delayMs: number, action: Action): void {
    this.at(this.now + Math.max(0, delayMs), action)
  }

  at(time: number, action: Action): void {
    const t = this.times
    const s = this.seqs
    const a = this.actions
    let i = t.length
    const seq = this.seq++
    t.push(time)
    s.push(seq)
    a.push(action)
    while (i > 0) {
      const p = (i - 1) >> 1
      if (t[p]! < time || (t[p] === time && s[p]! < seq)) break
      t[i] = t[p]!
      s[i] = s[p]!
      a[i] = a[p]!
      i = p
    }
    t[i] = time
    s[i] = seq
    a[i] = action
  }

  /** Takes the earliest event and advances the clock to it; undefined when none is left. */
  pop(): Action | undefined {
    const t = this.times
    const s = this.seqs
    const a = this.actions
    const n = t.length
    if (n === 0) return undefined
    const top = a[0]!
    this.now = t[0]!
    const lastT = t.pop()!
    const lastS = s.pop()!
    const lastA = a.pop()!
    const m = n - 1
    if (m > 0) {
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        if (l >= m) break
        const r = l + 1
        const c = r < m && (t[r]! < t[l]! || (t[r] === t[l] && s[r]! < s[l]!)) ? r : l
        if (lastT < t[c]! || (lastT === t[c] && lastS < s[c]!)) break
        t[i] = t[c]!
        s[i] = s[c]!
        a[i] = a[c]!
        i = c
      }
      t[i] = lastT
      s[i] = lastS
      a[i] = lastA
    }
    this.ran++
    return top
  }
}

/**
 * A seeded PRNG (mulberry32): the same seed gives the same run. The engine's picker draws from
 * Math.random, so a run replaces it with this generator for its duration (withRandom).
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export async function withRandom<T>(random: () => number, fn: () => Promise<T>): Promise<T> {
  const saved = Math.random
  Math.random = random
  try {
    return await fn()
  } finally {
    Math.random = saved
  }
}
