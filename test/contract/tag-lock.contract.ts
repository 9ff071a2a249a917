/**
 * The suite every TagLock must pass (in-process, Redis). `make` builds `n` locks that stand for
 * `n` build-index instances (for the local lock, one process: the same lock every time).
 */
import type { Test } from 'tap'
import type { TagLock } from '../../lib/build-index/server/tag-lock.js'

export type TagLockFactory = (n: number) => Promise<{ locks: TagLock[]; cleanup(): Promise<void> }>

/** A promise and the function that resolves it. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void
  const wait = new Promise<void>((r) => {
    open = r
  })
  return { wait, open }
}

export function tagLockContract(t: Test, name: string, make: TagLockFactory): void {
  t.test(`${name}: one holder per key across instances, in turn`, async (t) => {
    const { locks, cleanup } = await make(2)
    t.teardown(cleanup)
    const [a, b] = locks as [TagLock, TagLock]
    let inside = 0
    let most = 0
    const order: string[] = []
    const first = gate()
    const entered = gate()
    const one = a.run('tags/x', async () => {
      inside++
      most = Math.max(most, inside)
      order.push('a')
      entered.open()
      await first.wait
      inside--
    })
    await entered.wait
    const two = b.run('tags/x', async (hold) => {
      inside++
      most = Math.max(most, inside)
      order.push('b')
      await hold.check()
      inside--
    })
    // b cannot be inside while a holds the key: it is waiting.
    t.same(order, ['a'])
    first.open()
    await Promise.all([one, two])
    t.same(order, ['a', 'b'])
    t.equal(most, 1)
  })

  t.test(`${name}: other keys do not wait; a throwing holder releases`, async (t) => {
    const { locks, cleanup } = await make(2)
    t.teardown(cleanup)
    const [a, b] = locks as [TagLock, TagLock]
    const hold = gate()
    const held = a.run('tags/x', () => hold.wait)
    t.equal(await b.run('tags/y', async () => 'y'), 'y', 'another key runs while x is held')
    hold.open()
    await held
    await t.rejects(
      a.run('tags/x', async () => {
        throw new Error('boom')
      }),
      /boom/,
    )
    t.equal(await b.run('tags/x', async () => 'after'), 'after', 'released after the throw')
  })

  t.test(`${name}: 50 racing increments through read-modify-write lose nothing`, async (t) => {
    const { locks, cleanup } = await make(2)
    t.teardown(cleanup)
    let counter = 0
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        (locks[i % locks.length] as TagLock).run('tags/n', async (hold) => {
          const read = counter
          await new Promise((r) => setImmediate(r))
          await hold.check()
          counter = read + 1
        }),
      ),
    )
    t.equal(counter, 50)
  })
}
