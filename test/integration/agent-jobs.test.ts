/**
 * The agents' task worker against real parts: an in-process herd (tracker, origin, build-index,
 * proxy), a resource API on a file store serving DistributionTasks, and real agents with jobs
 * on. Tasks are written by hand, as the herd's job controller writes them. Checked: the bytes
 * that land (sha256), the status written (phase, bytes, digest, path, source, attempts), the
 * roots refusals writing nothing, cancel, an agent restarted mid-task, an apiserver restarted
 * under a running task and under the watch, and a rerun.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { AgentServer } from '../../lib/agent/server/index.js'
import { pushDirectory } from '../../lib/cli/dir-push.js'
import { Tag } from '../../lib/core/index.js'
import type { Herd } from '../../lib/herd/index.js'
import { startTestAgent } from '../helpers/agent.js'
import { startTestHerd } from '../helpers/herd.js'
import {
  createTask,
  finished,
  type JobsApi,
  startJobsApi,
  updateTaskSpec,
  waitTask,
} from '../helpers/job-tasks.js'
import { pushBytes } from '../helpers/pull-cluster.js'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

interface World {
  dir: string
  herd: Herd
  jobs: JobsApi
  agent(
    host: string,
    o?: { roots?: string[]; settings?: Record<string, unknown>; jobs?: Record<string, unknown> },
  ): Promise<AgentServer>
}

async function world(t: Test): Promise<World> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-agent-jobs-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const herd = await startTestHerd(t, dir)
  const jobs = await startJobsApi(t, dir)
  return {
    dir,
    herd,
    jobs,
    agent: (host, o = {}) =>
      startTestAgent(t, {
        dataDir: join(dir, `agent-${host}`),
        herd,
        settings: {
          hostName: host,
          stallTimeoutSeconds: 30,
          jobs: {
            apiserver: jobs.address,
            roots: o.roots ?? [join(dir, `root-${host}`)],
            proxy: herd.urls.proxy,
            progressSeconds: 1,
            ...o.jobs,
          },
          ...o.settings,
        },
      }),
  }
}

/** Entries of a folder tree (names relative to it, links not followed), temp files included. */
async function tree(dir: string, prefix = ''): Promise<string[]> {
  if (!existsSync(dir)) return []
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    out.push(prefix + e.name)
    if (e.isDirectory()) out.push(...(await tree(join(dir, e.name), `${prefix}${e.name}/`)))
  }
  return out.sort()
}

t.test('a push on the source host, a pull on a target: the file lands and the status says how', async (t) => {
  const w = await world(t)
  const root1 = join(w.dir, 'root-192.168.1.1')
  const root10 = join(w.dir, 'root-192.168.1.10')
  await w.agent('192.168.1.1', { roots: [root1] })
  await w.agent('192.168.1.10', { roots: [root10] })
  const name = 'xxx交易数据.txt'
  const bytes = randomBytes(3 << 20)
  await mkdir(join(root1, 'usr/local/data'), { recursive: true })
  const src = join(root1, 'usr/local/data', name)
  await writeFile(src, bytes)
  const tag = Tag.from({ srcHost: '192.168.1.1', srcDir: '/usr/local/data', fileName: name, version: 'j1' })

  await createTask(w.jobs, 'd1-push', {
    host: '192.168.1.1',
    action: 'push',
    sourcePath: src,
    tag: tag.toString(),
  })
  // A task of a host with no agent is nobody's business here.
  await createTask(w.jobs, 'd1-nobody', {
    host: '192.168.1.99',
    action: 'pull',
    tag: tag.toString(),
    path: '/tmp',
  })
  const pushed = await waitTask(w.jobs, 'd1-push', finished)
  t.match(pushed.status, {
    phase: 'Succeeded',
    observedGeneration: 1,
    attempts: 1,
    bytes: bytes.length,
    digest: `sha256:${sha(bytes)}`,
    path: tag.toString(),
  })
  t.ok(pushed.status?.startedAt && pushed.status.finishedAt, 'start and end times')

  const dst = join(root10, 'usr/local/data')
  await createTask(w.jobs, 'd1-10', {
    host: '192.168.1.10',
    action: 'pull',
    tag: tag.toString(),
    path: dst,
    options: { resType: 'file', hasFlag: true, isCover: true, timeoutSeconds: 60, stallSeconds: 30 },
  })
  const pulled = await waitTask(w.jobs, 'd1-10', finished)
  t.match(pulled.status, {
    phase: 'Succeeded',
    observedGeneration: 1,
    attempts: 1,
    bytes: bytes.length,
    digest: `sha256:${sha(bytes)}`,
    path: join(dst, name),
    source: 'swarm',
  })
  t.equal(sha(await readFile(join(dst, name))), sha(bytes), 'the bytes are the source file')
  t.same(await tree(dst), [name, `${name}.flag`], 'the file and its flag, no temp file')
  t.notOk((await w.jobs.client.get('default', 'd1-nobody')).status, 'no agent touched the other host’s task')

  // Nothing new: the same task is not run again (its generation is done).
  await new Promise((r) => setTimeout(r, 300))
  t.equal((await w.jobs.client.get('default', 'd1-10')).status?.attempts, 1, 'run once')
})

t.test(
  'outside the roots, through a link, with "..", a path as a name, no roots: Failed, nothing written',
  async (t) => {
    const w = await world(t)
    const root = join(w.dir, 'root-h20')
    await mkdir(root, { recursive: true })
    await w.agent('h20', { roots: [root] })
    await w.agent('h21', { roots: [] })
    const { tag } = await pushBytes(w.herd, w.dir, 'payload.bin', randomBytes(64 << 10))
    const outside = join(w.dir, 'outside')
    await mkdir(outside)
    await writeFile(join(outside, 'secret.txt'), 'keep me')
    await symlink(outside, join(root, 'link'))
    await mkdir(join(root, 'd'))
    await symlink(join(outside, 'secret.txt'), join(root, 'd', tag.fileName))
    const pull = (path: string, extra = {}) => ({
      host: 'h20',
      action: 'pull' as const,
      tag: tag.toString(),
      path,
      ...extra,
    })
    const cases: [string, Parameters<typeof createTask>[2], RegExp][] = [
      [
        'outside',
        pull(join(w.dir, 'elsewhere', 'x')),
        /^FORBIDDEN: destination folder .*elsewhere\/x: it is outside this agent's jobs\.roots/,
      ],
      [
        'via-link',
        pull(join(root, 'link', 'sub')),
        /^FORBIDDEN: .*link\/sub \(resolves to .*outside\/sub\).*jobs\.roots/,
      ],
      [
        'link-target',
        pull(join(root, 'd')),
        /^FORBIDDEN: destination .*d\/payload\.bin \(resolves to .*outside\/secret\.txt\)/,
      ],
      [
        'push-outside',
        {
          host: 'h20',
          action: 'push',
          sourcePath: join(outside, 'secret.txt'),
          tag: tag.withVersion('x').toString(),
        },
        /^FORBIDDEN: source .*outside\/secret\.txt: it is outside/,
      ],
      [
        'no-roots',
        { ...pull(join(w.dir, 'anything')), host: 'h21' },
        /^FORBIDDEN: .*this agent has no jobs\.roots/,
      ],
    ]
    // ".." in a path and a path as a name are refused by the API itself (the kinds' schema), so
    // no agent ever sees them; the agent's own checks of the same are unit-tested.
    const refused: [string, Record<string, unknown>][] = [
      ['dotdot', pull(`${root}/../elsewhere2`)],
      ['slash-name', pull(join(root, 'n'), { name: 'a/b' })],
      ['dotdot-name', pull(join(root, 'n'), { name: '..' })],
    ]
    for (const [name, spec] of refused)
      await t.rejects(
        createTask(w.jobs, name, spec as never),
        { code: 'INVALID' },
        `${name}: refused by the API`,
      )
    for (const [name, spec] of cases) await createTask(w.jobs, name, spec)
    for (const [name, , reason] of cases) {
      const task = await waitTask(w.jobs, name, finished)
      t.equal(task.status?.phase, 'Failed', `${name}: Failed`)
      t.match(task.status?.lastError, reason, `${name}: the reason names the path and the key`)
    }
    t.same(await tree(outside), ['secret.txt'], 'nothing written outside the root')
    t.equal(await readFile(join(outside, 'secret.txt'), 'utf8'), 'keep me', 'the linked file is untouched')
    t.notOk(
      existsSync(join(w.dir, 'elsewhere')) || existsSync(join(w.dir, 'elsewhere2')),
      'no folder created',
    )
    t.notOk(existsSync(join(w.dir, 'anything')), 'the agent without roots created nothing')
    t.same(await tree(root), ['d', `d/${tag.fileName}`, 'link'], 'nothing written in the root either')
  },
)

t.test('cancel: a running pull is aborted and leaves nothing; a cancelled task never runs', async (t) => {
  const w = await world(t)
  const root = join(w.dir, 'root-h30')
  const agent = await w.agent('h30', { settings: { bandwidth: { ingressBytesPerSec: '1MiB' } } })
  const { tag } = await pushBytes(w.herd, w.dir, 'big.bin', randomBytes(12 << 20))
  const dst = join(root, 'in')
  await createTask(w.jobs, 'slow', { host: 'h30', action: 'pull', tag: tag.toString(), path: dst })
  // Progress reaches the status while bytes move (progressSeconds 1 here).
  const moving = await waitTask(w.jobs, 'slow', (o) => o.status?.phase === 'Running' && o.status.bytes > 0)
  t.ok((moving.status?.bytes ?? 0) < 12 << 20, 'a progress line, before the end')
  await updateTaskSpec(w.jobs, 'slow', (s) => ({ ...s, cancelled: true }))
  const task = await waitTask(w.jobs, 'slow', finished)
  t.equal(task.status?.phase, 'Failed')
  t.match(task.status?.lastError, /^ABORTED: cancelled while running/)
  t.equal(task.status?.observedGeneration, 2, 'final for the cancel’s generation')
  t.same(await tree(dst), [], 'no file, no temp file')
  t.equal(agent.jobs?.active, 0, 'nothing runs any more')

  // A folder: its files land in a temp tree first; a cancel then must remove that tree.
  const folder = join(w.dir, 'src', 'daily')
  await mkdir(folder, { recursive: true })
  for (const n of ['a.bin', 'b.bin', 'c.bin']) await writeFile(join(folder, n), randomBytes(3 << 20))
  const dirTag = Tag.from({
    srcHost: '10.0.0.1',
    srcDir: join(w.dir, 'src'),
    fileName: 'daily',
    version: 'v1',
  })
  await pushDirectory({ srcPath: folder, tag: dirTag, dstHost: w.herd.urls.proxy })
  const dirDst = join(root, 'dirs')
  await createTask(w.jobs, 'slow-dir', {
    host: 'h30',
    action: 'pull',
    tag: dirTag.toString(),
    path: dirDst,
    options: { resType: 'directory', hasFlag: false, isCover: true, timeoutSeconds: 60, stallSeconds: 30 },
  })
  const deadline = Date.now() + 30_000
  while (!(await tree(dirDst)).some((n) => n.endsWith('.tmp'))) {
    if (Date.now() > deadline) throw new Error('the folder pull never made its temp tree')
    await new Promise((r) => setTimeout(r, 20))
  }
  await updateTaskSpec(w.jobs, 'slow-dir', (s) => ({ ...s, cancelled: true }))
  t.match((await waitTask(w.jobs, 'slow-dir', finished)).status, {
    phase: 'Failed',
    lastError: /^ABORTED: cancelled/,
  })
  t.same(await tree(dirDst), [], 'the temp tree is removed')

  await createTask(w.jobs, 'never', {
    host: 'h30',
    action: 'pull',
    tag: tag.toString(),
    path: dst,
    cancelled: true,
  })
  const never = await waitTask(w.jobs, 'never', finished)
  t.match(never.status, {
    phase: 'Failed',
    attempts: 0,
    lastError: /^ABORTED: the task was cancelled before it ran/,
  })
  t.same(await tree(dst), [], 'still nothing')
})

t.test(
  'an agent restarted mid-task runs it again; a rerun (attempt bumped) runs a failed task again',
  async (t) => {
    const w = await world(t)
    const root = join(w.dir, 'root-h40')
    const slow = await w.agent('h40', { settings: { bandwidth: { ingressBytesPerSec: '1MiB' } } })
    const bytes = randomBytes(10 << 20)
    const { tag } = await pushBytes(w.herd, w.dir, 'resume.bin', bytes)
    const dst = join(root, 'in')
    await createTask(w.jobs, 'mid', { host: 'h40', action: 'pull', tag: tag.toString(), path: dst })
    await waitTask(w.jobs, 'mid', (o) => o.status?.phase === 'Running')
    await slow.stop()
    t.equal((await w.jobs.client.get('default', 'mid')).status?.phase, 'Running', 'left Running by the stop')
    await w.agent('h40')
    const task = await waitTask(w.jobs, 'mid', finished)
    t.match(task.status, { phase: 'Succeeded', attempts: 2, observedGeneration: 1, bytes: bytes.length })
    t.equal(sha(await readFile(join(dst, tag.fileName))), sha(bytes), 'the file is whole')

    // isCover false with the name taken: Failed; the file moved away and a rerun completes it.
    await createTask(w.jobs, 'taken', {
      host: 'h40',
      action: 'pull',
      tag: tag.toString(),
      path: dst,
      options: { resType: 'file', hasFlag: false, isCover: false, timeoutSeconds: 60, stallSeconds: 30 },
    })
    const failed = await waitTask(w.jobs, 'taken', finished)
    t.match(failed.status, { phase: 'Failed', attempts: 1, lastError: /^ALREADY_EXISTS: / })
    await rm(join(dst, tag.fileName))
    await updateTaskSpec(w.jobs, 'taken', (s) => ({ ...s, attempt: s.attempt + 1 }))
    const rerun = await waitTask(w.jobs, 'taken', finished)
    t.match(rerun.status, { phase: 'Succeeded', attempts: 2, observedGeneration: 2 })
    t.equal(sha(await readFile(join(dst, tag.fileName))), sha(bytes))
  },
)

t.test(
  'the apiserver restarts: the result of a task that ended meanwhile lands, the watch resumes',
  async (t) => {
    const w = await world(t)
    const root = join(w.dir, 'root-h50')
    await w.agent('h50', { settings: { bandwidth: { ingressBytesPerSec: '2MiB' } } })
    const bytes = randomBytes(6 << 20)
    const { tag } = await pushBytes(w.herd, w.dir, 'during.bin', bytes)
    const dst = join(root, 'in')
    const file = join(dst, tag.fileName)
    await createTask(w.jobs, 'during', { host: 'h50', action: 'pull', tag: tag.toString(), path: dst })
    await waitTask(w.jobs, 'during', (o) => o.status?.phase === 'Running')
    await w.jobs.restart({
      whileDown: async () => {
        // The transfer ends while no apiserver can hear of it.
        const deadline = Date.now() + 30_000
        while (!existsSync(file)) {
          if (Date.now() > deadline) throw new Error('the pull did not finish while the apiserver was down')
          await new Promise((r) => setTimeout(r, 50))
        }
      },
    })
    const task = await waitTask(w.jobs, 'during', finished)
    t.match(task.status, { phase: 'Succeeded', attempts: 1, bytes: bytes.length })
    t.equal(sha(await readFile(file)), sha(bytes))

    // The watch came back by itself: a task created after the restart runs.
    const other = join(root, 'after')
    await createTask(w.jobs, 'after', { host: 'h50', action: 'pull', tag: tag.toString(), path: other })
    t.match((await waitTask(w.jobs, 'after', finished)).status, { phase: 'Succeeded' })
    t.equal(sha(await readFile(join(other, tag.fileName))), sha(bytes))
  },
)

t.test('a watch on a connection that went silent is resumed on a new one', async (t) => {
  const w = await world(t)
  const root = join(w.dir, 'root-h60')
  await w.agent('h60', { jobs: { watchSilenceSeconds: 5 } })
  const bytes = randomBytes(256 << 10)
  const { tag } = await pushBytes(w.herd, w.dir, 'late.bin', bytes)
  await createTask(w.jobs, 'first', {
    host: 'h60',
    action: 'pull',
    tag: tag.toString(),
    path: join(root, 'a'),
  })
  await waitTask(w.jobs, 'first', finished)
  // The agent's connections stay open and carry nothing: only the silence tells.
  w.jobs.relay.freeze()
  await createTask(w.jobs, 'second', {
    host: 'h60',
    action: 'pull',
    tag: tag.toString(),
    path: join(root, 'b'),
  })
  const task = await waitTask(w.jobs, 'second', finished, 90_000)
  t.equal(task.status?.phase, 'Succeeded', 'seen after the watch was resumed')
  t.equal(sha(await readFile(join(root, 'b', tag.fileName))), sha(bytes))
})

t.test('an agent without jobs.apiserver runs no worker', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-agent-nojobs-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const herd = await startTestHerd(t, dir)
  const agent = await startTestAgent(t, { dataDir: join(dir, 'agent'), herd })
  t.equal(agent.jobs, undefined)
})
