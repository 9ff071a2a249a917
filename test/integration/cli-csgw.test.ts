/**
 * PushCLI `--dst-type csgw` and PullCLI `--src-host ftp://…` against ftp-srv in-process:
 * a round trip through the binaries' programs, credentials from the environment only, and the
 * one-line errors with their exit codes.
 */
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { type Output, runCli } from '../../lib/cli/common.js'
import { pullProgram, pushProgram } from '../../lib/cli/programs.js'
import { tempDir } from '../helpers/files.js'
import { startFtpSrv } from '../helpers/ftp.js'

const USER = 'csgw-cli'
const PASSWORD = 'cli-secret-never-printed'

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

async function run(make: typeof pullProgram, args: string[]) {
  const out: string[] = []
  const err: string[] = []
  const io: Output = { out: (l) => out.push(l), err: (l) => err.push(l) }
  const code = await runCli(make(io), ['node', 'cli', ...args], io)
  return { code, out: out.join('\n'), err: err.join('\n') }
}

t.test('push to the CSGW, pull it back', async (t) => {
  const dir = await tempDir(t)
  const src = join(dir, 'prices.csv')
  const bytes = randomBytes(300_000)
  await writeFile(src, bytes)
  const address = `ftp://127.0.0.1:${srv.port}/ref/daily`
  const pushed = await run(pushProgram, ['push', '--dst-type', 'csgw', '--dst-host', address, src])
  t.equal(pushed.code, 0, pushed.err)
  t.match(pushed.out, `csgw:   ${address}/prices.csv`)
  t.match(pushed.out, /digest: sha256:[0-9a-f]{64}/)
  t.ok(Buffer.compare(await readFile(join(srv.root, 'ref', 'daily', 'prices.csv')), bytes) === 0)

  const dst = join(dir, 'out')
  const pulled = await run(pullProgram, ['pull', '--src-host', address, '--dst-path', dst, 'prices.csv'])
  t.equal(pulled.code, 0, pulled.err)
  t.match(pulled.out, `pulled ${address}/prices.csv -> ${join(dst, 'prices.csv')}`)
  t.ok(Buffer.compare(await readFile(join(dst, 'prices.csv')), bytes) === 0)
  t.same(await readdir(dst), ['prices.csv'], 'no temp file left')

  // The file name can come from a tag too.
  const dst2 = join(dir, 'out2')
  const byTag = await run(pullProgram, [
    'pull',
    '--src-host',
    address,
    '--dst-path',
    dst2,
    '--tag',
    'h-/x-prices.csv:v1',
  ])
  t.equal(byTag.code, 0, byTag.err)
  t.ok(existsSync(join(dst2, 'prices.csv')))
})

t.test('one-line errors, exit codes, no secret', async (t) => {
  const dir = await tempDir(t)
  const address = `ftp://127.0.0.1:${srv.port}/ref`
  const missing = await run(pullProgram, ['pull', '--src-host', address, '--dst-path', dir, 'nope.csv'])
  t.equal(missing.code, 3, 'NOT_FOUND exits 3')
  t.match(missing.err, /^PullCLI: CSGW ftp:\/\/127\.0\.0\.1:\d+\/ref: .*nope\.csv/)
  t.same(await readdir(dir), [], 'nothing written')

  process.env.SHOAL_CSGW_PASSWORD = 'wrong-one'
  t.teardown(() => {
    process.env.SHOAL_CSGW_PASSWORD = PASSWORD
  })
  const denied = await run(pullProgram, ['pull', '--src-host', address, '--dst-path', dir, 'x.csv'])
  t.equal(denied.code, 8, 'CSGW_AUTH exits 8')
  t.match(denied.err, /^PullCLI: CSGW ftp:\/\/127\.0\.0\.1:\d+\/ref refused the login/)
  t.notOk(denied.err.includes('\n'))
  t.notOk(denied.err.includes('wrong-one'))

  const usage = await run(pushProgram, ['push', '--dst-type', 'csgw', join(dir, 'x')])
  t.equal(usage.code, 2)
  t.match(usage.err, '--dst-type csgw needs --dst-host ftp://host[:port]/dir')
  const badType = await run(pushProgram, ['push', '--dst-type', 'nfs', join(dir, 'x')])
  t.equal(badType.code, 2)
  const noName = await run(pullProgram, ['pull', '--src-host', address, '--dst-path', dir])
  t.equal(noName.code, 2)
  t.match(noName.err, 'a file name is required')
})
