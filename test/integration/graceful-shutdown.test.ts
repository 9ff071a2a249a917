/**
 * Stopping the daemons while they work: a herd and two agents stopped in the middle of a
 * capped swarm download (agents leeching from the origin and seeding to each other, PullCLI
 * waiting on both) stop without leaving a socket, server, timer or file handle open in the
 * process, the pulls end with an error rather than hanging, nothing is left under the final
 * names, and the agents' peer listeners are closed.
 */
import { readdir } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { AgentClient } from '../../lib/agent/client/index.js'
import { pull } from '../../lib/cli/pull.js'
import { startTestAgent } from '../helpers/agent.js'
import { tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'
import { pushBytes } from '../helpers/pull-cluster.js'

/** The process's active resources as a sorted list ("TCPSocketWrap", "Timeout"...). */
const resources = () => process.getActiveResourcesInfo().sort()

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', () => resolve(true))
  })
}

t.test('a herd and agents stopped mid-download leave nothing open behind', async (t) => {
  const baseline = resources()
  const dir = await tempDir(t, 'shoal-shutdown-')
  // Stopped by the test itself; these teardowns only matter when an assertion throws first.
  const herd = await startTestHerd(t, dir, { origin: { bandwidth: { egressBytesPerSec: 2 * 1024 * 1024 } } })
  const agents = [
    await startTestAgent(t, { herd, dataDir: join(dir, 'a1') }),
    await startTestAgent(t, { herd, dataDir: join(dir, 'a2') }),
  ]
  const { tag, digest } = await pushBytes(herd, dir, 'big.bin', Buffer.alloc(32 * 1024 * 1024, 3))
  const pulls = agents.map((agent, i) =>
    pull({ tag, dstPath: join(dir, `out${i}`), dstHost: agent.url, timeoutSeconds: 120 }).then(
      () => 'finished',
      (err: { code?: string }) => `failed ${err.code}`,
    ),
  )
  // Both agents are downloading (bytes verified, not all of them) before anything stops.
  const deadline = Date.now() + 60_000
  for (;;) {
    const progress = await Promise.all(
      agents.map((a) => new AgentClient(a.url, { timeoutMs: 2000 }).progress(digest).catch(() => undefined)),
    )
    if (progress.every((p) => p && p.state === 'downloading' && p.piecesDone > 0)) break
    if (Date.now() > deadline)
      throw new Error(`agents did not start downloading: ${JSON.stringify(progress)}`)
    await sleep(50)
  }
  const peerPorts = agents.map((a) => a.peerPort)
  for (const a of agents) await a.stop()
  await herd.stop()

  const outcomes = await Promise.all(pulls)
  for (const outcome of outcomes) t.match(outcome, /^failed /, `the pull ends with an error (${outcome})`)
  for (const i of [0, 1]) {
    const names = await readdir(join(dir, `out${i}`)).catch(() => [])
    t.same(names, [], `nothing is left in out${i}, under the final name or a temp one`)
  }
  for (const port of peerPorts) t.ok(await refused(port), `peer port ${port} is closed`)

  let left = resources()
  const settle = Date.now() + 10_000
  while (left.join() !== baseline.join() && Date.now() < settle) {
    await sleep(100)
    left = resources()
  }
  t.same(left, baseline, 'the same active handles as before the daemons started')
})
