/**
 * Bandwidth classes of distribution jobs, on a real agent (in-process herd, resource API on a
 * file store, real sockets): a pull task of a class is held to the rate its agent configures
 * for the class, on that download only (the host's cap never throttled); an unknown class
 * fails the task naming the classes the agent has, writing nothing; the agent's API refuses a
 * garbled cap header. The bound that catches a cap not enforced is strict (rate ≤ cap × 1.1),
 * the one that only says "not absurdly slow" is loose: the machine is shared.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startTestAgent } from '../helpers/agent.js'
import { startTestHerd } from '../helpers/herd.js'
import { createTask, finished, startJobsApi, waitTask } from '../helpers/job-tasks.js'
import { pushBytes } from '../helpers/pull-cluster.js'

const MiB = 1024 * 1024
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

async function metric(url: string, name: string, direction: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const m = new RegExp(`^${name}\\{direction="${direction}"[^}]*\\} (\\S+)$`, 'm').exec(text)
  return m ? Number(m[1]) : Number.NaN
}

t.test(
  'a pull of a bandwidth class is held to its rate; an unknown class fails, naming those configured',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-jobs-bw-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const herd = await startTestHerd(t, dir)
    const jobs = await startJobsApi(t, dir)
    const root = join(dir, 'root')
    const agent = await startTestAgent(t, {
      dataDir: join(dir, 'agent'),
      herd,
      settings: {
        hostName: 'h1',
        stallTimeoutSeconds: 30,
        jobs: {
          apiserver: jobs.address,
          roots: [root],
          proxy: herd.urls.proxy,
          bandwidthClasses: { bulk: '2MiB', urgent: 0 },
        },
      },
    })
    const SIZE = 6 * MiB
    const CAP = 2 * MiB
    const bytes = randomBytes(SIZE)
    const { tag, digest } = await pushBytes(herd, dir, 'bulk.bin', bytes)

    await createTask(jobs, 'nope', {
      host: 'h1',
      action: 'pull',
      tag: tag.toString(),
      path: join(root, 'nope'),
      options: {
        resType: 'file',
        hasFlag: false,
        isCover: true,
        timeoutSeconds: 60,
        stallSeconds: 30,
        bandwidthClass: 'gold',
      },
    })
    const refused = await waitTask(jobs, 'nope', finished)
    t.equal(refused.status?.phase, 'Failed')
    t.match(
      refused.status?.lastError,
      /^INVALID: bandwidth class "?gold"? is not configured on agent h1 \(jobs\.bandwidthClasses: bulk, urgent\)/,
    )
    t.notOk(existsSync(join(root, 'nope')), 'nothing written, not even the folder')

    const dst = join(root, 'in')
    await createTask(jobs, 'bulk', {
      host: 'h1',
      action: 'pull',
      tag: tag.toString(),
      path: dst,
      options: {
        resType: 'file',
        hasFlag: false,
        isCover: true,
        timeoutSeconds: 120,
        stallSeconds: 30,
        bandwidthClass: 'bulk',
      },
    })
    const done = await waitTask(jobs, 'bulk', finished, 60_000)
    t.equal(done.status?.phase, 'Succeeded', done.status?.lastError ?? '')
    t.equal(sha(await readFile(join(dst, 'bulk.bin'))), sha(bytes), 'the bytes landed')
    t.same(await readdir(dst), ['bulk.bin'], 'no temp file left')

    const progress = (await (await fetch(`${agent.url}/downloads/${digest}`)).json()) as {
      ingressCapBytesPerSec?: number
      startedAt: number
      finishedAt: number
    }
    t.equal(progress.ingressCapBytesPerSec, CAP, "the download was held to the class's cap")
    const seconds = (progress.finishedAt - progress.startedAt) / 1000
    const rate = SIZE / seconds
    t.ok(
      rate <= CAP * 1.1,
      `class-capped download: ${(rate / MiB).toFixed(2)} MiB/s in ${seconds.toFixed(2)} s ≤ 2.2`,
    )
    t.ok(seconds < 20, `but not absurdly longer than 3 s (${seconds.toFixed(2)} s)`)
    t.equal(
      await metric(agent.url, 'shoal_bandwidth_throttled_seconds_total', 'ingress'),
      0,
      "the host's own cap (unlimited) never held anything: the cap was the download's",
    )

    // The cap header is network input: garbage is a 400 naming it, and no download starts.
    const other = await pushBytes(herd, dir, 'other.bin', randomBytes(64 << 10))
    for (const bad of ['abc', '-1', '1e6', '99999999999999999']) {
      const res = await fetch(`${agent.url}/namespace/default/blobs/${other.digest}`, {
        headers: { 'x-shoal-ingress-cap': bad },
      })
      t.equal(res.status, 400, `cap ${bad} refused`)
      t.match(await res.json(), { code: 'BAD_REQUEST', message: /x-shoal-ingress-cap/ })
    }
    t.equal((await fetch(`${agent.url}/downloads/${other.digest}`)).status, 404, 'nothing was downloaded')
  },
)
