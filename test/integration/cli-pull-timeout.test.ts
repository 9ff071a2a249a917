/**
 * PullCLI's `--timeout` counts seconds without progress, against a fake agent on a real socket:
 * a pull that stalls (in the swarm or while copying) fails with TIMEOUT and leaves nothing under
 * the destination name, not even a temp file; one that keeps moving for longer than the timeout
 * is never cut off.
 */
import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { pull } from '../../lib/cli/pull.js'
import { Digest } from '../../lib/core/index.js'
import { type FakeAgentOptions, startFakeAgent } from '../helpers/fake-agent.js'
import { tempDir } from '../helpers/files.js'

const TAG = 'h-/d-prices.csv:v1'
const bytes = randomBytes(64 * 1024)
const digest = Digest.fromBuffer(bytes)

async function pullFrom(t: Test, behaviour: Partial<FakeAgentOptions>, timeoutSeconds: number) {
  const dir = await tempDir(t)
  const dst = join(dir, 'out')
  const agent = await startFakeAgent(t, { digest, bytes, ...behaviour })
  const started = Date.now()
  const outcome = await pull({ tag: TAG, dstPath: dst, dstHost: agent.address, timeoutSeconds }).then(
    (r) => ({ r, err: undefined }),
    (err) => ({ r: undefined, err }),
  )
  return { ...outcome, seconds: (Date.now() - started) / 1000, dst }
}

for (const [name, behaviour] of [
  ['the swarm never verifies a piece', { swarm: 'stall' }],
  ['the copy stops half-way', { copy: 'stall' }],
] as const) {
  t.test(`stalled (${name}): TIMEOUT after ~1 s, no file and no temp file left`, async (t) => {
    const { err, seconds, dst } = await pullFrom(t, behaviour, 1)
    t.match(err, {
      code: 'TIMEOUT',
      message: new RegExp(`^pull of ${TAG.replace(/[.]/g, '\\.')} timed out after 1 s without progress`),
    })
    t.ok(seconds >= 0.9 && seconds < 5, `gave up after ${seconds} s`)
    t.same(await readdir(dst), [], 'nothing under the destination name, no temp file')
  })
}

t.test('a pull that keeps moving past the timeout is never cut off', async (t) => {
  // The swarm phase: one piece of 12 every 200 ms, 2.4 s in all, with a 1 s timeout.
  const swarm = await pullFrom(t, { swarm: { steps: 12, everyMs: 200 } }, 1)
  t.equal(swarm.err, undefined, String(swarm.err))
  t.ok(swarm.seconds > 2, `the swarm phase took ${swarm.seconds} s`)
  t.equal(swarm.r?.source, 'swarm')
  t.ok(Buffer.compare(await readFile(join(swarm.dst, 'prices.csv')), bytes) === 0)

  // One large piece: its blocks arrive (bytesReceived grows) but nothing is verified for 2.4 s.
  const piece = await pullFrom(t, { swarm: { steps: 12, everyMs: 200, unverified: true } }, 1)
  t.equal(piece.err, undefined, String(piece.err))
  t.ok(piece.seconds > 2, `the piece took ${piece.seconds} s`)
  t.ok(Buffer.compare(await readFile(join(piece.dst, 'prices.csv')), bytes) === 0)

  // The copy phase: 4 KiB every 150 ms, 2.4 s in all.
  const copy = await pullFrom(t, { copy: { chunkBytes: 4096, everyMs: 150 } }, 1)
  t.equal(copy.err, undefined, String(copy.err))
  t.ok(copy.seconds > 2, `the copy took ${copy.seconds} s`)
  t.same(await readdir(copy.dst), ['prices.csv'], 'only the file, no temp file')
  t.ok(Buffer.compare(await readFile(join(copy.dst, 'prices.csv')), bytes) === 0)
})

t.test('--timeout 0: no deadline at all (a slow start is waited for)', async (t) => {
  const r = await pullFrom(t, { swarm: { steps: 2, everyMs: 600 } }, 0)
  t.equal(r.err, undefined, String(r.err))
  t.equal(r.r?.size, bytes.length)
})
