/**
 * PullCLI's automatic CSGW fallback, against ftp-srv in-process and real agents on loopback:
 * when the swarm cannot serve (agent down, tag unknown, no progress) the file comes from the
 * CSGW folder, says so (notice, source 'csgw', fallbackReason), and is checked against the
 * digest when the swarm told it; without a CSGW the swarm's error stands. `--src-host ftp://`
 * pulls follow the same cover / new-name / flag rules.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { pullFromCsgw } from '../../lib/cli/csgw.js'
import { DEFAULT_FLAG } from '../../lib/cli/flag-file.js'
import { pull } from '../../lib/cli/pull.js'
import { pullAny } from '../../lib/cli/pull-any.js'
import { Digest, Tag } from '../../lib/core/index.js'
import { startFakeAgent } from '../helpers/fake-agent.js'
import { tempDir } from '../helpers/files.js'
import { startFtpSrv } from '../helpers/ftp.js'
import { deadAddress, startHerdAndAgent } from '../helpers/pull-cluster.js'

const USER = 'csgw-fallback'
const PASSWORD = 'fallback-secret'
const srv = await startFtpSrv(USER, PASSWORD)
t.teardown(() => srv.close())
const saved = { user: process.env.SHOAL_CSGW_USER, password: process.env.SHOAL_CSGW_PASSWORD }
process.env.SHOAL_CSGW_USER = USER
process.env.SHOAL_CSGW_PASSWORD = PASSWORD
t.teardown(() => {
  for (const [k, v] of [
    ['SHOAL_CSGW_USER', saved.user],
    ['SHOAL_CSGW_PASSWORD', saved.password],
  ] as const) {
    if (v === undefined) delete process.env[k]
    else process.env[k] = v
  }
})

const bytes = randomBytes(200_000)
const digest = Digest.fromBuffer(bytes)
await mkdir(join(srv.root, 'ref'), { recursive: true })
await writeFile(join(srv.root, 'ref', 'prices.csv'), bytes)
const CSGW = `ftp://127.0.0.1:${srv.port}/ref`
const TAG = 'h-/data/ref-prices.csv:v1'
const root = await tempDir(t)
const dead = await deadAddress()
let n = 0
async function freshDir(): Promise<string> {
  const dir = join(root, `out-${++n}`)
  await mkdir(dir)
  return dir
}

t.test('agent down: fetched from the CSGW, said on the notice line and in the result', async (t) => {
  const dir = await freshDir()
  const notices: string[] = []
  const r = await pull({
    tag: TAG,
    dstPath: dir,
    dstHost: dead,
    csgw: CSGW,
    hasFlag: 'F',
    notice: (line) => notices.push(line),
  })
  t.equal(r.source, 'csgw')
  t.match(r.fallbackReason, new RegExp(`^cannot reach the agent at ${dead} \\(ECONNREFUSED`))
  t.equal(notices.length, 1)
  t.match(notices[0], /^the swarm could not serve h-\/data\/ref-prices\.csv:v1 \(cannot reach the agent/)
  t.equal(notices[0]?.endsWith(`fetching prices.csv from CSGW ${CSGW}`), true, String(notices[0]))
  t.notOk(notices[0]?.includes(PASSWORD))
  t.equal(r.path, join(dir, 'prices.csv'))
  t.ok(r.digest.equals(digest))
  t.equal(r.size, bytes.length)
  t.ok((await readFile(r.path)).equals(bytes))
  t.equal(r.flag, join(dir, 'prices.csv.flag'), 'the flag rule holds for the CSGW copy too')
  t.same((await readdir(dir)).sort(), ['prices.csv', 'prices.csv.flag'], 'no temp file left')

  // Without a CSGW the swarm's error is the answer.
  await t.rejects(pull({ tag: TAG, dstPath: await freshDir(), dstHost: dead }), {
    code: 'UNAVAILABLE',
    message: /cannot reach the agent/,
  })
})

t.test('tag unknown to Shoal: fetched from the CSGW', async (t) => {
  const dir = await tempDir(t)
  const { agent } = await startHerdAndAgent(t, dir)
  const out = await freshDir()
  const notices: string[] = []
  const r = await pull({
    tag: TAG,
    dstPath: out,
    dstHost: agent.url,
    csgw: CSGW,
    notice: (line) => notices.push(line),
  })
  t.equal(r.source, 'csgw')
  t.match(r.fallbackReason, /tag not found/)
  t.equal(notices.length, 1)
  t.ok((await readFile(r.path)).equals(bytes))
})

t.test('no progress in the swarm within the timeout: fetched from the CSGW, verified', async (t) => {
  const agent = await startFakeAgent(t, { digest, bytes, swarm: 'stall' })
  const out = await freshDir()
  const r = await pull({ tag: TAG, dstPath: out, dstHost: agent.address, csgw: CSGW, timeoutSeconds: 1 })
  t.equal(r.source, 'csgw')
  t.match(r.fallbackReason, /timed out after 1 s without progress/)
  t.ok(r.digest.equals(digest), 'the digest the swarm resolved matched the copy')
  t.same(await readdir(out), ['prices.csv'])
})

t.test(
  'the agent never answers the tag lookup: one timeout, then the CSGW (not a second wait)',
  async (t) => {
    const agent = await startFakeAgent(t, { digest, bytes, resolve: 'stall' })
    const out = await freshDir()
    const r = await pullAny({
      tag: Tag.parse(TAG),
      dstPath: out,
      dstHost: agent.address,
      timeoutSeconds: 1,
      isCover: true,
      hasFlag: false,
      flag: DEFAULT_FLAG,
      csgw: CSGW,
    })
    t.equal(r.source, 'csgw')
    t.match(r.fallbackReason, /timed out after 1 s without progress/)
    t.equal(agent.tagRequests, 1, 'the agent was asked once')
    t.equal(agent.blobRequests, 0)
    t.same(await readdir(out), ['prices.csv'])
  },
)

t.test('both sources fail: the error gives the CSGW reason and the swarm reason', async (t) => {
  const out = await freshDir()
  const err = await pull({ tag: 'h-/data/ref-absent.csv:v1', dstPath: out, dstHost: dead, csgw: CSGW }).catch(
    (e) => e,
  )
  t.match(err, { message: /absent\.csv.*\(the CSGW was the fallback: cannot reach the agent at / })
  t.match(err.details, { swarmReason: /^cannot reach the agent/ })
  t.not(err.code, 'UNAVAILABLE', `the CSGW's own code (${err.code}), not the swarm's`)
  t.same(await readdir(out), [])
})

t.test('CSGW bytes that do not match the known digest: DIGEST_MISMATCH, nothing placed', async (t) => {
  const wanted = Digest.fromBuffer(Buffer.from('the bytes Shoal has under this tag'))
  const agent = await startFakeAgent(t, {
    digest: wanted,
    bytes,
    blobError: { status: 503, code: 'UNAVAILABLE', message: 'no origin can serve the blob right now' },
  })
  const out = await freshDir()
  await t.rejects(pull({ tag: TAG, dstPath: out, dstHost: agent.address, csgw: CSGW, hasFlag: 'F' }), {
    code: 'DIGEST_MISMATCH',
    message: new RegExp(`expected ${wanted}`),
  })
  t.same(await readdir(out), [], 'no file, no temp file, no flag')

  // The digest can come from the caller (a tag resolved elsewhere): the agent is not needed.
  const out2 = await freshDir()
  await t.rejects(pull({ tag: TAG, dstPath: out2, dstHost: dead, csgw: CSGW, digest: wanted }), {
    code: 'DIGEST_MISMATCH',
  })
  t.same(await readdir(out2), [])
})

t.test('--src-host ftp://: the cover / new-name / flag rules of a swarm pull', async (t) => {
  const other = Buffer.from('yesterday')
  const withOld = async () => {
    const dir = await freshDir()
    await writeFile(join(dir, 'prices.csv'), other)
    return dir
  }
  // Cover (default): replaced atomically; the flag comes after.
  const d1 = await withOld()
  const r1 = await pullFromCsgw({ srcHost: CSGW, name: 'prices.csv', dstPath: d1, hasFlag: 'F' })
  t.equal(r1.source, 'csgw')
  t.equal(r1.flag, join(d1, 'prices.csv.flag'))
  t.ok((await readFile(join(d1, 'prices.csv'))).equals(bytes))
  t.same((await readdir(d1)).sort(), ['prices.csv', 'prices.csv.flag'])

  // No cover, no new name: refused before the CSGW is contacted (a dead one here).
  const d2 = await withOld()
  await t.rejects(
    pullFromCsgw({
      srcHost: `ftp://${dead}/ref`,
      name: 'prices.csv',
      dstPath: d2,
      isCover: false,
      hasFlag: 'F',
    }),
    { code: 'ALREADY_EXISTS' },
  )
  t.same(await readdir(d2), ['prices.csv'])
  t.ok((await readFile(join(d2, 'prices.csv'))).equals(other))

  // No cover, a new name: written beside the old file.
  const r3 = await pullFromCsgw({
    srcHost: CSGW,
    name: 'prices.csv',
    dstPath: d2,
    isCover: false,
    newName: 'prices-new.csv',
  })
  t.equal(r3.path, join(d2, 'prices-new.csv'))
  t.ok((await readFile(r3.path)).equals(bytes))
  t.ok((await readFile(join(d2, 'prices.csv'))).equals(other))

  // A path as the new name: refused.
  await t.rejects(
    pullFromCsgw({ srcHost: CSGW, name: 'prices.csv', dstPath: d2, isCover: false, newName: '../x' }),
    { code: 'INVALID_PATH' },
  )

  // The same bytes already there, digest known: kept as they are.
  const before = await stat(join(d1, 'prices.csv'))
  const r4 = await pullFromCsgw({ srcHost: CSGW, name: 'prices.csv', dstPath: d1, expectedDigest: digest })
  t.equal(r4.source, 'local')
  t.equal((await stat(join(d1, 'prices.csv'))).ino, before.ino)

  // An unwritable destination fails at once.
  const started = Date.now()
  await t.rejects(pullFromCsgw({ srcHost: CSGW, name: 'prices.csv', dstPath: '/proc/1/nope' }), {
    code: 'INVALID_PATH',
  })
  t.ok(Date.now() - started < 1000)
})
