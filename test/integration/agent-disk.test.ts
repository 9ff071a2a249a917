/**
 * The agent and its disk, on real files and real sockets (a herd and an agent in this process,
 * pulls through the agent's API with PullCLI's code):
 *
 * - a data folder that fills up during a pull (a small tmpfs, filled once the download is under
 *   way) fails the pull naming the file and the free space, releases the partial download, is
 *   not resurrected by a restart, and a pull succeeds once space is freed;
 * - a blob that cannot fit above `minFreeBytes` is refused (507) before anything is written;
 * - `DELETE /blobs/:digest` during a download stops it and deletes its partial data.
 *
 * The ingress cap makes each download last a few seconds, so the test acts while it is under
 * way; the tmpfs needs mount privileges (CI runs as root), and that case is skipped, saying so,
 * where mounting is refused.
 */
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, open, readdir, rm, statfs } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { AgentClient } from '../../lib/agent/client/index.js'
import type { AgentServer } from '../../lib/agent/server/index.js'
import { pull } from '../../lib/cli/pull.js'
import { push } from '../../lib/cli/push.js'
import { type Digest, digestFile } from '../../lib/core/index.js'
import { errnoCode } from '../../lib/errors/index.js'
import type { Herd } from '../../lib/herd/index.js'
import { startTestAgent } from '../helpers/agent.js'
import { randomFile, tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'

const MiB = 1 << 20
const BLOB = 12 * MiB
/** 12 MiB at 4 MiB/s: three seconds of download to act in, however busy the machine. */
const INGRESS = 4 * MiB

async function pushBlob(herd: Herd, dir: string): Promise<{ tag: string; digest: Digest }> {
  await mkdir(join(dir, 'src'), { recursive: true })
  const src = join(dir, 'src', 'blob.bin')
  await randomFile(src, BLOB)
  const pushed = await push({ srcPath: src, srcHost: 'disk', dstHost: herd.urls.proxy })
  return { tag: pushed.tag.toString(), digest: pushed.digest }
}

function startAgent(
  t: Test,
  herd: Herd,
  dataDir: string,
  settings: Record<string, unknown> = {},
): Promise<AgentServer> {
  return startTestAgent(t, {
    herd,
    dataDir,
    settings: { bandwidth: { ingressBytesPerSec: INGRESS }, ...settings },
  })
}

const run = promisify(execFile)

async function freeBytes(path: string): Promise<number> {
  const s = await statfs(path)
  return s.bavail * s.bsize
}

/** Mounts a tmpfs of `bytes` at `dir`, unmounted at teardown. */
async function mountTmpfs(t: Test, dir: string, bytes: number): Promise<void> {
  await mkdir(dir, { recursive: true })
  await run('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir])
  t.teardown(() => run('umount', ['-l', dir]).catch(() => undefined))
}

/** Why a tmpfs cannot be mounted here, or undefined when it can (tried once, on a scratch folder). */
async function tmpfsUnavailable(): Promise<string | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-tmpfs-probe-'))
  try {
    await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir])
    await run('umount', [dir])
    return undefined
  } catch (err) {
    return `a small tmpfs cannot be mounted here (needs root or CAP_SYS_ADMIN): ${(err as Error).message.trim()}`
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined)
  }
}

/** Fills the file system holding `dir` to the last byte; returns the filler's path. */
async function fillUp(dir: string): Promise<string> {
  const path = join(dir, 'filler')
  const fh = await open(path, 'w')
  const chunk = Buffer.alloc(MiB, 1)
  let pos = 0
  try {
    for (;;) {
      const { bytesWritten } = await fh.write(chunk, 0, chunk.length, pos)
      if (bytesWritten === 0) break
      pos += bytesWritten
    }
  } catch (err) {
    if (errnoCode(err) !== 'ENOSPC') throw err
  } finally {
    await fh.close()
  }
  return path
}

/** Waits until the agent's download of `digest` has verified `pieces` pieces. */
async function underWay(agent: AgentServer, digest: Digest, pieces: number): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    const p = await agent.progressOf(digest).catch(() => undefined)
    if (p && p.state === 'downloading' && p.piecesDone >= pieces) return
    if (p && p.state !== 'downloading') throw new Error(`download ended early: ${p.state}`)
    await sleep(10)
  }
  throw new Error('the download never got under way')
}

/** Names under the agent's downloads/ and resume/ folders (partial data, bitfields, journal). */
async function leftovers(dataDir: string): Promise<string[]> {
  const names: string[] = []
  for (const sub of ['store/downloads', 'resume'])
    for (const name of await readdir(join(dataDir, sub)).catch(() => [] as string[]))
      names.push(`${sub}/${name}`)
  return names
}

t.test(
  'a disk that fills during a pull: a clear error, the space released, no resurrection',
  { skip: await tmpfsUnavailable() },
  async (t) => {
    const dir = await tempDir(t)
    const dataDir = join(dir, 'agent-disk')
    await mountTmpfs(t, dataDir, 16 * MiB)
    const herd = await startTestHerd(t, dir, { peerTtlSeconds: 30 })
    const { tag, digest } = await pushBlob(herd, dir)
    let agent = await startAgent(t, herd, dataDir, { minFreeBytes: 0 })

    const pulling = pull({ tag, dstPath: join(dir, 'out'), dstHost: agent.url })
    pulling.catch(() => undefined)
    await underWay(agent, digest, 2)
    const filler = await fillUp(dataDir)
    const partial = join(dataDir, 'store', 'downloads', digest.hex)
    await t.rejects(pulling, {
      code: 'INSUFFICIENT_STORAGE',
      message: new RegExp(
        `the disk is full at ${partial} \\(ENOSPC\\): .+ free there; .*` +
          'the partial download was deleted: .+ released',
      ),
    })
    t.same(await leftovers(dataDir), [], 'no partial data, bitfield or resume entry is left')
    t.ok((await freeBytes(dataDir)) >= 2 * 256 * 1024, 'the space of the pieces written is free again')
    t.match(await agent.progressOf(digest), { state: 'failed', error: /disk is full/ })
    t.equal(await new AgentClient(agent.url).http.status('GET', '/health'), 200, 'the agent still serves')

    // A restart does not bring the download back.
    await agent.stop()
    agent = await startAgent(t, herd, dataDir, { minFreeBytes: 0 })
    await t.rejects(agent.progressOf(digest), { code: 'BLOB_NOT_FOUND' }, 'nothing resumed')
    t.same(await leftovers(dataDir), [])

    // Space freed: the same pull succeeds.
    await rm(filler)
    const pulled = await pull({ tag, dstPath: join(dir, 'out'), dstHost: agent.url, timeoutSeconds: 60 })
    t.ok((await digestFile(pulled.path)).digest.equals(digest), 'the pulled file has the pushed sha256')
  },
)

t.test('a blob that cannot fit above minFreeBytes is refused before anything is written', async (t) => {
  const dir = await tempDir(t)
  const dataDir = join(dir, 'agent')
  const herd = await startTestHerd(t, dir)
  const { tag, digest } = await pushBlob(herd, dir)
  // More than is free on this disk, whatever else is written meanwhile: no room for the blob.
  const reserve = (await freeBytes(dir)) + 1024 ** 3
  let agent = await startAgent(t, herd, dataDir, { minFreeBytes: reserve })
  await t.rejects(pull({ tag, dstPath: join(dir, 'out'), dstHost: agent.url }), {
    code: 'INSUFFICIENT_STORAGE',
    status: 507,
    message: new RegExp(
      `^not enough disk space to download ${digest} into ${join(dataDir, 'store')}: it needs 12\\.0 MiB ` +
        '\\(blob 12\\.0 MiB\\), and .+ must stay free \\(minFreeBytes\\); .+ is free\\. Nothing was written',
    ),
  })
  t.same(await leftovers(dataDir), [], 'no sparse file, no resume entry')

  await agent.stop()
  agent = await startAgent(t, herd, dataDir, { minFreeBytes: 0, bandwidth: {} })
  const pulled = await pull({ tag, dstPath: join(dir, 'out'), dstHost: agent.url, timeoutSeconds: 60 })
  t.ok((await digestFile(pulled.path)).digest.equals(digest), 'with room, the pull succeeds')
})

t.test('DELETE /blobs/:digest during a download stops it and deletes its partial data', async (t) => {
  const dir = await tempDir(t)
  const dataDir = join(dir, 'agent')
  const herd = await startTestHerd(t, dir, { peerTtlSeconds: 30 })
  const { tag, digest } = await pushBlob(herd, dir)
  const agent = await startAgent(t, herd, dataDir, { minFreeBytes: 0 })
  const pulling = pull({ tag, dstPath: join(dir, 'out'), dstHost: agent.url })
  pulling.catch(() => undefined)
  await underWay(agent, digest, 2)
  t.not((await leftovers(dataDir)).length, 0, 'a partial download is on disk')

  await new AgentClient(agent.url).remove(digest)
  await t.rejects(pulling, { message: /cancelled: the blob was deleted from this agent/ })
  t.same(await leftovers(dataDir), [], 'no partial data, bitfield or resume entry is left')
  await t.rejects(agent.progressOf(digest), { code: 'BLOB_NOT_FOUND' })
})
