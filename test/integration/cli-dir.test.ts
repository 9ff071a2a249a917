/**
 * Directory push and pull (`--res-type directory`) against a real herd and agent on loopback:
 * a daily version that changes 3 files uploads 3 and, pulled over the previous one, fetches 3;
 * trees come back equal (contents, modes, mtimes, empty folders, non-ASCII names); links and
 * fifos are refused at push; a hostile manifest and a stalled pull leave nothing behind.
 */
import { execFileSync } from 'node:child_process'
import { chmod, mkdir, readdir, readFile, symlink, utimes, writeFile } from 'node:fs/promises'
import { createServer, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { AgentClient } from '../../lib/agent/client/index.js'
import { pullDirectory } from '../../lib/cli/dir-pull.js'
import { pushDirectory } from '../../lib/cli/dir-push.js'
import { encodeManifest, type Manifest } from '../../lib/cli/manifest.js'
import { Digest, Tag } from '../../lib/core/index.js'
import type { Herd } from '../../lib/herd/index.js'
import { ProxyClient } from '../../lib/proxy/client/index.js'
import { startTestAgent } from '../helpers/agent.js'
import { snapshot, treeDiff } from '../helpers/dir-tree.js'
import { tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'

function dirTag(srcDir: string, version: string, name = 'data'): Tag {
  return Tag.from({ srcHost: 'h', srcDir, fileName: name, version })
}

/** A tree with nested and empty folders, modes 0755/0600, a non-ASCII name and 20 small files. */
async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, 'a/b/c'), { recursive: true })
  await mkdir(join(root, 'empty/inner-empty'), { recursive: true })
  await mkdir(join(root, 'many'))
  await writeFile(join(root, 'run.sh'), '#!/bin/sh\necho hi\n')
  await chmod(join(root, 'run.sh'), 0o755)
  await writeFile(join(root, 'a/secret.key'), 'the key')
  await chmod(join(root, 'a/secret.key'), 0o600)
  await writeFile(join(root, 'a/b/c/deep.txt'), 'deep')
  await writeFile(join(root, 'a/b/xxx交易数据.txt'), '交易数据 rows\n')
  for (let i = 0; i < 20; i++) await writeFile(join(root, `many/f${i}.txt`), `file ${i}\n`.repeat(i + 1))
  await writeFile(join(root, 'dup-1'), 'same content')
  await writeFile(join(root, 'a/dup-2'), 'same content')
  await chmod(join(root, 'a/b'), 0o750)
  await utimes(join(root, 'many/f3.txt'), 1_600_000_000.25, 1_600_000_000.25)
}

t.test('directories through a real herd and agent', async (t) => {
  const base = await tempDir(t)
  const herd = await startTestHerd(t, base)
  const agent = await startTestAgent(t, { herd, dataDir: join(base, 'agent') })
  const agentClient = new AgentClient(agent.url)
  const srcDir = join(base, 'src')
  const src = join(srcDir, 'data')
  await makeTree(src)
  const v1Snap = await snapshot(src)
  const fileCount = v1Snap.filter((e) => e.type === 'file').length

  const p1 = await pushDirectory({ srcPath: src, tag: dirTag(srcDir, 'v1'), dstHost: herd.urls.proxy })
  t.equal(p1.files, fileCount)
  t.equal(p1.newFiles, fileCount - 1, 'every distinct content is new; the duplicate is pushed once')
  t.ok(p1.uploaded)

  const again = await pushDirectory({
    srcPath: src,
    tag: dirTag(srcDir, 'v1-again'),
    dstHost: herd.urls.proxy,
  })
  t.equal(again.newFiles, 0, 'an unchanged tree uploads nothing')
  t.notOk(again.uploaded, 'not even the manifest')
  t.ok(again.digest.equals(p1.digest), 'the same tree gives the same manifest digest')

  // The day's changes: 3 files.
  await writeFile(join(src, 'many/f1.txt'), 'changed one')
  await writeFile(join(src, 'a/b/c/deep.txt'), 'changed deep')
  await writeFile(join(src, 'a/b/xxx交易数据.txt'), '交易数据 changed\n')
  const v2Snap = await snapshot(src)
  const p2 = await pushDirectory({ srcPath: src, tag: dirTag(srcDir, 'v2'), dstHost: herd.urls.proxy })
  t.equal(p2.newFiles, 3, 'exactly the 3 changed files are uploaded')
  t.equal(
    p2.newBytes,
    Buffer.byteLength('changed one') +
      Buffer.byteLength('changed deep') +
      Buffer.byteLength('交易数据 changed\n'),
  )
  t.equal(p2.files, fileCount)

  const pull = (tag: Tag, dstPath: string, extra: Partial<Parameters<typeof pullDirectory>[0]> = {}) =>
    agentClient
      .resolve(tag)
      .then((manifestDigest) => pullDirectory({ tag, manifestDigest, dstPath, dstHost: agent.url, ...extra }))

  const dst1 = join(base, 'dst1')
  const r1 = await pull(dirTag(srcDir, 'v1'), dst1)
  t.equal(r1.path, join(dst1, 'data'))
  t.equal(r1.files, fileCount)
  t.equal(r1.fetchedFiles, fileCount - 1)
  t.equal(r1.localFiles, 1, 'the duplicate is copied, not fetched twice')
  t.equal(r1.source, 'swarm')
  t.same(treeDiff(v1Snap, await snapshot(r1.path)), [], 'v1 pulled equals v1 pushed')

  const dst2 = join(base, 'dst2')
  const r2 = await pull(dirTag(srcDir, 'v2'), dst2, { hasFlag: true })
  t.same(treeDiff(v2Snap, await snapshot(r2.path)), [], 'v2 pulled equals v2 pushed')
  t.equal(r2.flag, join(dst2, 'data.flag'), 'the flag is written beside the folder')
  t.same((await readdir(dst2)).sort(), ['data', 'data.flag'])

  // v2 over v1: only the 3 changed files come through the swarm.
  const over = await pull(dirTag(srcDir, 'v2'), dst1, { isCover: true })
  t.equal(over.fetchedFiles, 3, 'only the 3 changed files are fetched')
  t.equal(over.localFiles, fileCount - 3, 'the unchanged files are copied from the old tree')
  t.same(treeDiff(v2Snap, await snapshot(over.path)), [])
  t.same(await readdir(dst1), ['data'], 'the old tree and the temp folder are gone')
})

t.test('--is-cover false: ALREADY_EXISTS before anything is fetched, or --new-name', async (t) => {
  const base = await tempDir(t)
  const herd = await startTestHerd(t, base)
  const agent = await startTestAgent(t, { herd, dataDir: join(base, 'agent') })
  const agentClient = new AgentClient(agent.url)
  const srcDir = join(base, 'src')
  const src = join(srcDir, 'data')
  await makeTree(src)
  const v1Snap = await snapshot(src)
  const files = v1Snap.filter((e) => e.type === 'file').length
  await pushDirectory({ srcPath: src, tag: dirTag(srcDir, 'v1'), dstHost: herd.urls.proxy })
  await writeFile(join(src, 'many/f1.txt'), 'changed one')
  await writeFile(join(src, 'many/f2.txt'), 'changed two')
  await pushDirectory({ srcPath: src, tag: dirTag(srcDir, 'v2'), dstHost: herd.urls.proxy })
  const v2Snap = await snapshot(src)
  const dst = join(base, 'dst')
  const pull = async (version: string, extra: Partial<Parameters<typeof pullDirectory>[0]> = {}) => {
    const tag = dirTag(srcDir, version)
    const manifestDigest = await agentClient.resolve(tag)
    return pullDirectory({ tag, manifestDigest, dstPath: dst, dstHost: agent.url, ...extra })
  }
  await pull('v2')

  await t.rejects(pull('v1', { isCover: false }), { code: 'ALREADY_EXISTS', message: /--new-name/ })
  t.same(await readdir(dst), ['data'], 'nothing was written')
  await t.rejects(pull('v1', { isCover: false, newName: '../evil' }), { code: 'INVALID_PATH' })
  await t.rejects(pull('v1', { isCover: false, newName: 'data' }), { code: 'ALREADY_EXISTS' })

  const beside = await pull('v1', { isCover: false, newName: 'data-v1' })
  t.equal(beside.path, join(dst, 'data-v1'))
  t.same(treeDiff(v1Snap, await snapshot(beside.path)), [], 'v1 under the new name')
  t.same(treeDiff(v2Snap, await snapshot(join(dst, 'data'))), [], 'v2 untouched')
  t.equal(beside.fetchedFiles, 2, 'files equal to the tree under the own name are copied')
  t.equal(beside.localFiles, files - 2)
  t.same((await readdir(dst)).sort(), ['data', 'data-v1'])
  await t.rejects(pull('v1', { isCover: false, newName: 'data-v1' }), { code: 'ALREADY_EXISTS' })

  // The flag: json content, a custom suffix; a cover replaces the previous version's flag.
  const flagged = await pull('v2', { hasFlag: true, flag: { suffix: '.done', content: 'json' } })
  const covered = await pull('v1', { hasFlag: true, flag: { suffix: '.done', content: 'json' } })
  t.equal(covered.flag, join(dst, 'data.done'))
  const said = JSON.parse(await readFile(join(dst, 'data.done'), 'utf8'))
  t.equal(said.digest, covered.digest.toString(), 'the flag names the version now in place')
  t.not(said.digest, flagged.digest.toString())
  t.same(treeDiff(v1Snap, await snapshot(join(dst, 'data'))), [])

  // A file in the way of the folder is not replaced by it.
  await writeFile(join(dst, 'plain'), 'a file')
  await t.rejects(pull('v1', { name: 'plain' }), { code: 'ALREADY_EXISTS', message: /not a folder/ })
})

t.test('links and fifos are refused at push; the flag is waited for', async (t) => {
  const base = await tempDir(t)
  const herd = await startTestHerd(t, base)
  const proxy = new ProxyClient(herd.urls.proxy)
  const srcDir = join(base, 'src')

  const withLink = join(srcDir, 'linked')
  await mkdir(join(withLink, 'sub'), { recursive: true })
  await writeFile(join(withLink, 'sub/ok.txt'), 'ok')
  await symlink('/etc/passwd', join(withLink, 'sub/passwd'))
  const linkTag = dirTag(srcDir, 'v1', 'linked')
  await t.rejects(pushDirectory({ srcPath: withLink, tag: linkTag, dstHost: herd.urls.proxy }), {
    code: 'INVALID_PATH',
    message: /linked\/sub\/passwd: it is a symbolic link/,
  })
  await t.rejects(proxy.getTag(linkTag), { code: 'TAG_NOT_FOUND' }, 'nothing was tagged')

  const withFifo = join(srcDir, 'piped')
  await mkdir(withFifo, { recursive: true })
  execFileSync('mkfifo', [join(withFifo, 'queue')])
  await t.rejects(
    pushDirectory({ srcPath: withFifo, tag: dirTag(srcDir, 'v1', 'piped'), dstHost: herd.urls.proxy }),
    { code: 'INVALID_PATH', message: /piped\/queue: it is a fifo/ },
  )

  const flagged = join(srcDir, 'flagged')
  await mkdir(flagged)
  await writeFile(join(flagged, 'a'), 'a')
  const flagTag = dirTag(srcDir, 'v1', 'flagged')
  await t.rejects(
    pushDirectory({
      srcPath: flagged,
      tag: flagTag,
      dstHost: herd.urls.proxy,
      hasFlag: true,
      timeoutSeconds: 0.3,
    }),
    { code: 'TIMEOUT', message: /timed out after 0\.3 s/ },
  )
  await t.rejects(proxy.getTag(flagTag), { code: 'TAG_NOT_FOUND' })
  await writeFile(`${flagged}.flag`, '')
  const pushed = await pushDirectory({
    srcPath: flagged,
    tag: flagTag,
    dstHost: herd.urls.proxy,
    hasFlag: true,
    timeoutSeconds: 5,
  })
  t.equal(pushed.files, 1)
})

/** Pushes `manifest` (raw JSON, not checked) and a blob for its files; tags it. */
async function pushHostile(herd: Herd, tag: Tag, entries: unknown[]): Promise<void> {
  const proxy = new ProxyClient(herd.urls.proxy)
  const evil = Buffer.from('evil')
  await proxy.pushBlob('default', Digest.fromBuffer(evil), Readable.from([evil]), evil.length)
  const body = Buffer.from(JSON.stringify({ version: 1, root: { mode: 0o755, mtimeMs: 0 }, entries }))
  const digest = Digest.fromBuffer(body)
  await proxy.pushBlob('default', digest, Readable.from([body]), body.length)
  await proxy.putTag(tag, digest)
}

t.test('a hostile manifest is refused and nothing is written', async (t) => {
  const base = await tempDir(t)
  const herd = await startTestHerd(t, base)
  const agent = await startTestAgent(t, { herd, dataDir: join(base, 'agent') })
  const agentClient = new AgentClient(agent.url)
  const evil = Digest.fromBuffer(Buffer.from('evil')).toString()
  const entry = (path: string) => ({ path, type: 'file', size: 4, mode: 0o644, mtimeMs: 0, digest: evil })
  const dst = join(base, 'dst', 'inner')
  await mkdir(dst, { recursive: true })
  const cases: [string, unknown[], RegExp][] = [
    ['dotdot', [entry('../x')], /entry 0 "\.\.\/x": the path has a "\.\." component/],
    ['absolute', [entry(join(base, 'abs-x'))], /the path has an absolute path/],
    [
      'hidden-dotdot',
      [{ ...entry('a'), type: 'dir', size: 0, digest: undefined }, entry('a/../../x')],
      /"\.\."/,
    ],
  ]
  for (const [name, entries, message] of cases) {
    const tag = dirTag('/hostile', 'v1', name)
    await pushHostile(herd, tag, entries)
    const manifestDigest = await agentClient.resolve(tag)
    await t.rejects(pullDirectory({ tag, manifestDigest, dstPath: dst, dstHost: agent.url }), {
      code: 'BAD_MANIFEST',
      message,
    })
    t.same(await readdir(dst), [], `${name}: nothing in the destination`)
    t.same(await readdir(join(base, 'dst')), ['inner'], `${name}: nothing beside it`)
  }
  t.same((await readdir(base)).includes('abs-x'), false)
})

/**
 * An agent that serves a manifest and its blobs from memory but never answers for `stall`:
 * a pull that stops making progress mid-tree.
 */
async function stallingAgent(t: Test, blobs: Map<string, Buffer>, stall: string): Promise<string> {
  const sockets = new Set<Socket>()
  const waiting: ServerResponse[] = []
  const server = createServer((req, res) => {
    const m = /^\/namespace\/[^/]+\/blobs\/(.+)$/.exec(req.url ?? '')
    const digest = m ? decodeURIComponent(m[1] as string) : ''
    if (digest === stall) {
      waiting.push(res)
      return
    }
    const body = blobs.get(digest)
    if (!body) {
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ code: 'NOT_FOUND', message: 'no' }))
      return
    }
    res.writeHead(200, { 'content-length': body.length })
    res.end(body)
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  )
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

t.test('a pull that stalls mid-tree times out and leaves nothing under the final name', async (t) => {
  const base = await tempDir(t)
  const blobs = new Map<string, Buffer>()
  const entries: Manifest['entries'] = [{ path: 'd', type: 'dir', size: 0, mode: 0o755, mtimeMs: 0 }]
  for (let i = 0; i < 12; i++) {
    const body = Buffer.from(`file ${i}`)
    const digest = Digest.fromBuffer(body).toString()
    blobs.set(digest, body)
    entries.push({
      path: `d/f${String(i).padStart(2, '0')}`,
      type: 'file',
      size: body.length,
      mode: 0o644,
      mtimeMs: 0,
      digest,
    })
  }
  const manifest = encodeManifest({ version: 1, root: { mode: 0o755, mtimeMs: 0 }, entries })
  const manifestDigest = Digest.fromBuffer(manifest)
  blobs.set(manifestDigest.toString(), manifest)
  const agent = await stallingAgent(t, blobs, entries[7]?.digest as string)
  const dst = join(base, 'dst')
  const tag = dirTag('/x', 'v1')
  const started = Date.now()
  await t.rejects(
    pullDirectory({ tag, manifestDigest, dstPath: dst, dstHost: agent, timeoutSeconds: 0.5, concurrency: 2 }),
    { code: 'TIMEOUT', message: `pull of ${tag} timed out after 0.5 s without progress` },
  )
  t.ok(Date.now() - started < 10_000, 'within the timeout, not the request deadline')
  t.same(await readdir(dst), [], 'no folder under the final name, no temp folder')

  // An existing tree is kept as it was when the pull covering it times out.
  await mkdir(join(dst, 'data'))
  await writeFile(join(dst, 'data', 'old'), 'old')
  await t.rejects(pullDirectory({ tag, manifestDigest, dstPath: dst, dstHost: agent, timeoutSeconds: 0.5 }), {
    code: 'TIMEOUT',
  })
  t.same(await readdir(dst), ['data'])
  t.same(await readdir(join(dst, 'data')), ['old'])
})
