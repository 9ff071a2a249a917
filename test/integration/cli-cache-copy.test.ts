/**
 * PullCLI's fast path: the kernel copies the agent's verified cache file into the temp file
 * (no HTTP stream, no second hash), against a real herd and agent. The copy is a copy: changing
 * the pulled file leaves the cache intact. Where the cache file cannot be used (the agent's path
 * is not reachable from here, an older agent without the route) the blob is streamed and hashed;
 * a cache file of the wrong size is refused and nothing is left.
 */
import { randomBytes } from 'node:crypto'
import { appendFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { AgentClient } from '../../lib/agent/client/index.js'
import { fetchBlob } from '../../lib/cli/fetch.js'
import { pull } from '../../lib/cli/pull.js'
import { DEFAULT_NAMESPACE, Digest } from '../../lib/core/index.js'
import { startTestAgent } from '../helpers/agent.js'
import { startFakeAgent } from '../helpers/fake-agent.js'
import { tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'
import { pushBytes } from '../helpers/pull-cluster.js'

const root = await tempDir(t)
const herd = await startTestHerd(t, join(root, 'herd'))
const agent = await startTestAgent(t, { herd, dataDir: join(root, 'agent') })
const bytes = randomBytes(3 << 20)
const { tag, digest } = await pushBytes(herd, root, 'prices.csv', bytes)
const client = new AgentClient(agent.url)

t.test('a real agent: the cache file is copied, and the copy is independent of the cache', async (t) => {
  const out = await tempDir(t)
  const r = await pull({ tag, dstPath: out, dstHost: agent.url })
  t.ok((await readFile(r.path)).equals(bytes))
  t.same(await readdir(out), ['prices.csv'], 'no temp file left')

  const tmp = join(out, 'direct.tmp')
  const got = await fetchBlob(client, DEFAULT_NAMESPACE, digest, tmp)
  t.same(got, { size: bytes.length, copied: true })

  // What a user does to the pulled file never reaches the agent's cache.
  await appendFile(r.path, 'edited by a user')
  await writeFile(tmp, 'overwritten')
  const { path } = await client.blobFile(DEFAULT_NAMESPACE, digest)
  t.ok(Digest.fromBuffer(await readFile(path)).equals(digest), 'the cache file still hashes to the digest')
  const again = await pull({ tag, dstPath: await tempDir(t), dstHost: agent.url })
  t.ok((await readFile(again.path)).equals(bytes))
})

t.test('stream: true streams and hashes instead', async (t) => {
  const tmp = join(await tempDir(t), 'streamed.tmp')
  t.same(await fetchBlob(client, DEFAULT_NAMESPACE, digest, tmp, { stream: true }), {
    size: bytes.length,
    copied: false,
  })
  t.ok((await readFile(tmp)).equals(bytes))
})

t.test('a cache path not reachable from here, or an older agent: streamed', async (t) => {
  for (const cacheFile of [{ path: '/nonexistent/shoal-cache/blob', size: bytes.length }, undefined]) {
    const fake = await startFakeAgent(t, { digest, bytes, cacheFile })
    const tmp = join(await tempDir(t), 'x.tmp')
    const got = await fetchBlob(new AgentClient(fake.address), DEFAULT_NAMESPACE, digest, tmp)
    t.same(got, { size: bytes.length, copied: false }, String(cacheFile?.path ?? 'no route'))
    t.ok((await readFile(tmp)).equals(bytes))
    t.equal(fake.blobRequests, 1, 'the blob was streamed')
  }
})

t.test(
  'a cache file of another size: SIZE_MISMATCH, nothing left; a relative path: UPSTREAM_ERROR',
  async (t) => {
    const dir = await tempDir(t)
    const wrong = join(dir, 'wrong.bin')
    await writeFile(wrong, bytes.subarray(1))
    const fake = await startFakeAgent(t, { digest, bytes, cacheFile: { path: wrong, size: bytes.length } })
    const out = join(dir, 'out')
    await mkdir(out)
    await t.rejects(fetchBlob(new AgentClient(fake.address), DEFAULT_NAMESPACE, digest, join(out, 'x.tmp')), {
      code: 'SIZE_MISMATCH',
    })
    t.same(await readdir(out), [], 'no temp file left')

    const bad = await startFakeAgent(t, { digest, bytes, cacheFile: { path: 'relative/blob', size: 1 } })
    await t.rejects(fetchBlob(new AgentClient(bad.address), DEFAULT_NAMESPACE, digest, join(out, 'y.tmp')), {
      code: 'UPSTREAM_ERROR',
    })
    t.same(await readdir(out), [])
  },
)
