/**
 * Tens of thousands of small files work: 10,000 files in 100 folders pushed and pulled through
 * a real herd and agent, then pushed again unchanged (nothing uploaded) and pulled over the
 * first copy (nothing fetched). Prints the seconds of each step.
 *
 * The files hold SHOAL_DIR_MANY_DISTINCT (default 300) distinct contents: every one of the
 * 10,000 entries is walked, hashed, listed in the manifest, written, chmodded and compared, but
 * the cluster sees one blob per content. Each blob costs the single-threaded test process (herd,
 * agent and client share one event loop) some 35 ms to push and 40 ms to pull, so 10,000
 * distinct contents take about 15 minutes here: set SHOAL_DIR_MANY_DISTINCT=10000 to run that.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { AgentClient } from '../../lib/agent/client/index.js'
import { pullDirectory } from '../../lib/cli/dir-pull.js'
import { pushDirectory } from '../../lib/cli/dir-push.js'
import { Tag } from '../../lib/core/index.js'
import { startTestAgent } from '../helpers/agent.js'
import { snapshot, treeDiff } from '../helpers/dir-tree.js'
import { tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'

const FILES = 10_000
const PER_DIR = 100
const DISTINCT = Number(process.env.SHOAL_DIR_MANY_DISTINCT ?? 300)

t.test(`${FILES} small files push and pull`, async (t) => {
  const base = await tempDir(t)
  const herd = await startTestHerd(t, base)
  const agent = await startTestAgent(t, { herd, dataDir: join(base, 'agent') })
  const srcDir = join(base, 'src')
  const src = join(srcDir, 'many')
  for (let d = 0; d < FILES / PER_DIR; d++) {
    await mkdir(join(src, `d${d}`), { recursive: true })
    await Promise.all(
      Array.from({ length: PER_DIR }, (_, i) =>
        writeFile(join(src, `d${d}`, `f${i}.txt`), `content ${(d * PER_DIR + i) % DISTINCT}\n`),
      ),
    )
  }
  const tag = (v: string) => Tag.from({ srcHost: 'h', srcDir, fileName: 'many', version: v })

  const pushed = await pushDirectory({
    srcPath: src,
    tag: tag('v1'),
    dstHost: herd.urls.proxy,
    concurrency: 16,
  })
  t.equal(pushed.files, FILES)
  t.equal(pushed.newFiles, DISTINCT, 'one upload per distinct content')
  t.comment(`push of ${FILES} files: ${pushed.seconds.toFixed(1)} s`)

  const again = await pushDirectory({
    srcPath: src,
    tag: tag('v2'),
    dstHost: herd.urls.proxy,
    concurrency: 16,
  })
  t.equal(again.newFiles, 0)
  t.comment(`push again, unchanged: ${again.seconds.toFixed(1)} s`)

  const dst = join(base, 'dst')
  const manifestDigest = await new AgentClient(agent.url).resolve(tag('v1'))
  const pulled = await pullDirectory({
    tag: tag('v1'),
    manifestDigest,
    dstPath: dst,
    dstHost: agent.url,
    concurrency: 16,
  })
  t.equal(pulled.files, FILES)
  t.equal(pulled.fetchedFiles, DISTINCT, 'one fetch per distinct content')
  t.equal(pulled.localFiles, FILES - DISTINCT, 'the other files are local copies')
  t.comment(`pull of ${FILES} files: ${pulled.seconds.toFixed(1)} s`)
  t.same(treeDiff(await snapshot(src), await snapshot(pulled.path)), [], 'the trees are equal')

  const over = await pullDirectory({
    tag: tag('v2'),
    manifestDigest,
    dstPath: dst,
    dstHost: agent.url,
    concurrency: 16,
  })
  t.equal(over.fetchedFiles, 0, 'pulled over itself: every file is copied from the old tree')
  t.equal(over.localFiles, FILES)
  t.comment(`pull over the same tree: ${over.seconds.toFixed(1)} s`)
})
