/**
 * The swarm simulator (test/bench/sim) against the analytical floor at a small N, and its
 * determinism: the figures in docs/performance.md are only worth something if a run can be
 * repeated exactly and a small case lands where the physics says it must.
 */
import t from 'tap'
import { DEFAULT_PARAMS, type SimParams, Swarm } from '../bench/sim/swarm.js'

/** 8 agents, 32 MiB (128 pieces of 256 KiB), 8 MiB/s everywhere, no CPU ceiling. */
const SMALL: SimParams = {
  ...DEFAULT_PARAMS,
  agents: 8,
  size: 32 << 20,
  agentCap: 8 << 20,
  originCap: 8 << 20,
}

t.test(
  'a small swarm finishes between the floor and 1.25 × the floor, the origin sending one copy',
  async (t) => {
    const r = await new Swarm(SMALL).run()
    t.equal(r.finished, 8, 'every agent finished')
    t.equal(r.boundS, 4, 'S/B = 4 s')
    // S/B × (1 + log2(N)/pieces): every byte crosses each agent's ingress once at B, and a piece
    // needs log2(N) store-and-forward hops of one piece time to reach everyone.
    t.equal(r.floorS, 4 * (1 + 3 / 128))
    const makespanS = r.completionsS[r.completionsS.length - 1]!
    t.ok(makespanS >= r.floorS, `makespan ${makespanS.toFixed(3)} s is not below the floor ${r.floorS} s`)
    // Tolerance 25 %: start-up (the first pieces come from the origin alone) and the last hops.
    t.ok(makespanS <= 1.25 * r.floorS, `makespan ${makespanS.toFixed(3)} s within 1.25 × the floor`)
    // The origin's serve-once refusals: each piece leaves the origin about once.
    t.ok(r.originEgressCopies >= 1, `origin sent ${r.originEgressCopies.toFixed(3)} copies, at least one`)
    t.ok(r.originEgressCopies <= 1.1, `origin sent ${r.originEgressCopies.toFixed(3)} copies, at most 1.1`)
    t.ok(r.announces >= 9 + 8, 'every host announced started, every agent completed')
  },
)

t.test('the same seed gives the same run; another seed another one', async (t) => {
  const a = await new Swarm(SMALL).run()
  const b = await new Swarm(SMALL).run()
  const c = await new Swarm({ ...SMALL, seed: 2 }).run()
  t.same(a.completionsS, b.completionsS)
  t.equal(a.events, b.events)
  t.not(a.completionsS.join(), c.completionsS.join())
})

t.test('a per-host CPU ceiling below the caps slows the swarm down', async (t) => {
  const free = await new Swarm(SMALL).run()
  // 8 MiB/s received and about as much sent: a 6 MB/s ceiling is well below 16 MiB/s of work.
  const bound = await new Swarm({ ...SMALL, cpuBytesPerSec: 6e6 }).run()
  t.ok(
    bound.makespanOverBound.max > 1.5 * free.makespanOverBound.max,
    `${bound.makespanOverBound.max.toFixed(2)} against ${free.makespanOverBound.max.toFixed(2)} uncapped CPU`,
  )
})
