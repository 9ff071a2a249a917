/**
 * A cancel during a pull's final copy, on a real herd and agent: one that arrives before the
 * file (or folder) takes its final name leaves nothing under it and no temp file, and ends
 * ABORTED; one that arrives after the file was placed reports the truth, Succeeded, even over
 * the controller's "cancelled" status.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { pushDirectory } from '../../lib/cli/dir-push.js'
import { pull } from '../../lib/cli/pull.js'
import { pullAny } from '../../lib/cli/pull-any.js'
import { Tag } from '../../lib/core/index.js'
import { ShoalError } from '../../lib/errors/index.js'
import { DEFAULT_JOB_NAMESPACE } from '../../lib/jobs/kinds.js'
import { CANCELLED_ERROR } from '../../lib/jobs/reconcile.js'
import { startTestAgent } from '../helpers/agent.js'
import { startTestHerd } from '../helpers/herd.js'
import { createTask, finished, startJobsApi, waitTask } from '../helpers/job-tasks.js'
import { pushBytes, startHerdAndAgent } from '../helpers/pull-cluster.js'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

t.test(
  'a cancel during the final copy, before the rename: ABORTED, nothing under the final name',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-cancel-copy-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const { herd, agent } = await startHerdAndAgent(t, dir)
    const { tag } = await pushBytes(herd, dir, 'data.bin', randomBytes(4 << 20))
    const dst = join(dir, 'dst')

    // The agent fetches the blob first (swarm phase), then the pull copies it: cancel on the copy.
    const ac = new AbortController()
    let copying = 0
    await t.rejects(
      pull({
        tag,
        dstPath: dst,
        dstHost: agent.url,
        timeoutSeconds: 30,
        signal: ac.signal,
        onProgress: (p) => {
          if (p.phase === 'copy' && copying++ === 0)
            ac.abort(new ShoalError('ABORTED', 'cancelled by the test'))
        },
      }),
      { code: 'ABORTED' },
    )
    t.ok(copying > 0, 'the cancel came during the copy')
    t.same(await readdir(dst), [], 'no file under the final name, no temp file')

    // A folder: the cancel arrives once every file is in the temp tree, before the tree's rename.
    const src = join(dir, 'daily')
    await mkdir(src)
    for (const n of ['a.bin', 'b.bin']) await writeFile(join(src, n), randomBytes(256 << 10))
    const dirTag = Tag.from({ srcHost: '10.0.0.1', srcDir: dir, fileName: 'daily', version: 'v1' })
    await pushDirectory({ srcPath: src, tag: dirTag, dstHost: herd.urls.proxy })
    const dirDst = join(dir, 'dirs')
    const ac2 = new AbortController()
    await t.rejects(
      pullAny({
        tag: dirTag,
        dstPath: dirDst,
        dstHost: agent.url,
        timeoutSeconds: 30,
        isCover: true,
        hasFlag: false,
        flag: { suffix: '.flag', content: 'empty' },
        signal: ac2.signal,
        onProgress: (p) => {
          const d = p as { filesDone?: number; files?: number }
          if (d.files !== undefined && d.filesDone === d.files)
            ac2.abort(new ShoalError('ABORTED', 'cancelled'))
        },
      }),
      { code: 'ABORTED' },
    )
    t.ok(ac2.signal.aborted, 'the cancel came after every file was fetched')
    t.same(await readdir(dirDst), [], 'no folder under the final name, no temp tree')
  },
)

t.test('a cancel that reaches the agent after its pull succeeded: the task stays Succeeded', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-cancel-after-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const herd = await startTestHerd(t, dir)
  const jobs = await startJobsApi(t, dir)
  const root = join(dir, 'root')
  await startTestAgent(t, {
    dataDir: join(dir, 'agent'),
    herd,
    settings: { hostName: 'h1', stallTimeoutSeconds: 30, jobs: { apiserver: jobs.address, roots: [root] } },
  })
  const bytes = randomBytes(1 << 20)
  const { tag } = await pushBytes(herd, dir, 'late.bin', bytes)
  const dst = join(root, 'in')
  await createTask(jobs, 'late', { host: 'h1', action: 'pull', tag: tag.toString(), path: dst })
  const done = await waitTask(jobs, 'late', finished)
  t.equal(done.status?.phase, 'Succeeded')

  // What the job controller does on `shoal job cancel` when its view still said Running:
  // spec.cancelled (a new generation), then the status Failed "cancelled" for it.
  const cancelled = await jobs.client.update(DEFAULT_JOB_NAMESPACE, {
    metadata: done.metadata,
    spec: { ...done.spec, cancelled: true },
  })
  await jobs.client.updateStatus(DEFAULT_JOB_NAMESPACE, {
    metadata: { name: 'late', resourceVersion: cancelled.metadata.resourceVersion },
    spec: cancelled.spec,
    status: {
      phase: 'Failed',
      observedGeneration: cancelled.metadata.generation,
      attempts: 1,
      bytes: 0,
      seconds: 0,
      lastError: CANCELLED_ERROR,
    },
  })
  const truth = await waitTask(
    jobs,
    'late',
    (o) => o.status?.phase === 'Succeeded' && o.status.observedGeneration === cancelled.metadata.generation,
  )
  t.match(truth.status, { phase: 'Succeeded', bytes: bytes.length, digest: `sha256:${sha(bytes)}` })
  t.equal(sha(await readFile(join(dst, 'late.bin'))), sha(bytes), 'and the file is indeed there')
  t.ok(existsSync(join(dst, 'late.bin')))
})
