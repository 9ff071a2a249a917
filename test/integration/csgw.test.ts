/**
 * The CSGW client against real FTP servers on loopback: ftp-srv in-process (with a password)
 * and vsftpd from Debian (anonymous; skipped when not root or not installed), each also behind
 * a proxy that cuts a download after a known number of bytes, so resuming with REST is tested
 * at an exact point rather than by racing a kill.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readdirSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { type AddressInfo, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import t from 'tap'
import { CsgwClient, type CsgwOptions } from '../../lib/csgw/index.js'
import { isShoalError } from '../../lib/errors/index.js'
import { createLogger } from '../../lib/log/index.js'
import {
  canRunVsftpd,
  type FtpServer,
  selfSignedCert,
  startFtpProxy,
  startFtpSrv,
  startVsftpd,
} from '../helpers/ftp.js'

const USER = 'shoal-ops'
const PASSWORD = 'hunter2-never-printed'
const MiB = 1024 * 1024

const work = await mkdtemp(join(tmpdir(), 'shoal-csgw-test-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const big = join(work, 'big.bin')
const bigBytes = randomBytes(6 * MiB + 12345)
await writeFile(big, bigBytes)
const bigSha = createHash('sha256').update(bigBytes).digest('hex')

/** A logger whose lines are kept, to check that no credential is ever written. */
function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = []
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk))
      cb()
    },
  })
  return { logger: createLogger({ level: 'debug', destination: sink }), lines }
}

async function failure(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p
    return { message: 'resolved' }
  } catch (err) {
    return { code: isShoalError(err) ? err.code : undefined, message: (err as Error).message }
  }
}

interface Flavour {
  name: string
  start(): Promise<FtpServer>
  creds: Partial<CsgwOptions>
}

const flavours: Flavour[] = [
  { name: 'ftp-srv', start: () => startFtpSrv(USER, PASSWORD), creds: { user: USER, password: PASSWORD } },
]
if (canRunVsftpd()) flavours.push({ name: 'vsftpd', start: startVsftpd, creds: {} })
else t.comment('vsftpd tests skipped: needs root and the vsftpd package (.ci/apt-packages)')

for (const flavour of flavours) {
  t.test(flavour.name, async (t) => {
    const srv = await flavour.start()
    t.teardown(() => srv.close())
    const { logger, lines } = capturingLogger()
    const client = (extra: Partial<CsgwOptions> = {}, port = srv.port) =>
      new CsgwClient({
        address: `ftp://127.0.0.1:${port}${srv.writable === '/' ? '' : srv.writable}/drop`,
        ...flavour.creds,
        env: {},
        logger,
        backoffMs: 10,
        connectTimeoutMs: 5000,
        ...extra,
      })

    t.test('upload then download: byte-identical, temp name never the final name', async (t) => {
      const c = client()
      const finalOnDisk = join(srv.root, srv.writable, 'drop', 'big.bin')
      let sawTemp = false
      let checked = 0
      const up = await c.upload(big, undefined, 'big.bin', {
        onProgress: () => {
          // Mid-upload the final name must not exist; the temp name does.
          if (existsSync(finalOnDisk)) t.fail('final name visible mid-upload')
          checked++
          if (!sawTemp && existsSync(join(srv.root, srv.writable, 'drop')))
            sawTemp = existsSyncTemp(join(srv.root, srv.writable, 'drop'))
        },
      })
      t.equal(up.size, bigBytes.length)
      t.ok(checked > 0, 'progress was reported during the upload')
      t.ok(sawTemp, 'the upload went to a .big.bin.shoal-part-* name first')
      t.ok(existsSync(finalOnDisk), 'renamed to the final name when complete')
      const names = (await c.list()).map((e) => e.name)
      t.same(names, ['big.bin'], 'no temp file left behind')
      t.same(await c.stat(undefined, 'big.bin'), { size: bigBytes.length })

      const dest = join(work, `${flavour.name}-copy.bin`)
      const got = await c.download(undefined, 'big.bin', dest, { expectedSha256: `sha256:${bigSha}` })
      t.equal(got.size, bigBytes.length)
      t.equal(got.resumes, 0)
      t.ok(Buffer.compare(await readFile(dest), bigBytes) === 0, 'byte-identical')
      t.same(await leftovers(work, `${flavour.name}-copy.bin`), [], 'no temp file next to the destination')
    })

    t.test('a download cut after a known number of bytes resumes with REST', async (t) => {
      const cutAt = 2 * MiB + 777
      const proxy = await startFtpProxy(srv.port, { cutDataAfter: cutAt })
      t.teardown(() => proxy.close())
      const dest = join(work, `${flavour.name}-resumed.bin`)
      const got = await client({}, proxy.port).download(undefined, 'big.bin', dest, {
        expectedSha256: bigSha,
      })
      t.equal(proxy.cuts, 1, 'the proxy cut the transfer once')
      t.equal(got.resumes, 1, 'one resume')
      // The proxy sent exactly cutAt bytes; the client resumes from what reached its disk, which
      // may be a little less (bytes in flight when the connection dropped are lost).
      const rests = proxy.commands.filter((c) => /^REST /.test(c)).map((c) => Number(c.slice(5)))
      t.equal(rests.length, 1, `one REST: ${proxy.commands.filter((c) => /^(REST|RETR)/.test(c))}`)
      t.ok((rests[0] ?? 0) > 0 && (rests[0] ?? 0) <= cutAt, `REST ${rests[0]} within (0, ${cutAt}]`)
      t.ok(Buffer.compare(await readFile(dest), bigBytes) === 0, 'byte-identical after the resume')
      t.notOk(proxy.commands.includes('PASS hunter2-never-printed'), 'the proxy log masks PASS')
    })

    t.test('sha256 mismatch: DIGEST_MISMATCH and nothing at the final path', async (t) => {
      const dest = join(work, `${flavour.name}-bad.bin`)
      const f = await failure(
        client().download(undefined, 'big.bin', dest, { expectedSha256: '0'.repeat(64) }),
      )
      t.equal(f.code, 'DIGEST_MISMATCH', f.message)
      t.match(f.message, /127\.0\.0\.1/)
      t.notOk(existsSync(dest))
      t.same(await leftovers(work, `${flavour.name}-bad.bin`), [])
    })

    t.test('a missing file: NOT_FOUND naming the server, nothing written', async (t) => {
      const dest = join(work, `${flavour.name}-missing.bin`)
      const f = await failure(client().download(undefined, 'nope.bin', dest))
      t.equal(f.code, 'NOT_FOUND', f.message)
      t.match(f.message, /CSGW ftp:\/\/127\.0\.0\.1:\d+/)
      t.notOk(existsSync(dest))
      t.same(await leftovers(work, `${flavour.name}-missing.bin`), [])
    })

    t.test('a stalled download: TIMEOUT after the no-progress timeout, bounded reconnects', async (t) => {
      const proxy = await startFtpProxy(srv.port, { stallDataAfter: 100_000 })
      t.teardown(() => proxy.close())
      const dest = join(work, `${flavour.name}-stalled.bin`)
      const started = Date.now()
      const f = await failure(
        client({ noProgressTimeoutMs: 500, retries: 0 }, proxy.port).download(undefined, 'big.bin', dest),
      )
      t.equal(f.code, 'TIMEOUT', f.message)
      t.match(f.message, /no progress/)
      // The first attempt got 100,000 bytes (progress), the reconnect none: retries 0 ends it.
      t.equal(proxy.commands.filter((c) => /^REST /.test(c)).length, 1, 'reconnected once, resuming')
      t.ok(Date.now() - started < 20_000, 'gave up in bounded time')
      t.notOk(existsSync(dest))
    })

    t.test('remove', async (t) => {
      const c = client()
      await c.remove(undefined, 'big.bin')
      t.same(await c.list(), [])
      t.equal((await failure(c.stat(undefined, 'big.bin'))).code, 'NOT_FOUND')
    })

    t.test('wrong credentials: CSGW_AUTH, one line, no secret', async (t) => {
      const f = await failure(client({ user: 'intruder', password: 'wrong-secret-xyz' }).list())
      t.equal(f.code, 'CSGW_AUTH', f.message)
      t.notOk(f.message.includes('\n'), 'one line')
      t.match(f.message, /refused the login/)
      t.notOk(f.message.includes('wrong-secret-xyz'))
    })

    t.test('no credential in any log line', async (t) => {
      t.ok(lines.length > 0)
      t.notOk(lines.join('').includes(PASSWORD))
      t.notOk(lines.join('').includes('wrong-secret-xyz'))
    })
  })
}

t.test('ftp-srv: a failed upload leaves no temp file; credentials from env and netrc', async (t) => {
  const srv = await startFtpSrv(USER, PASSWORD)
  t.teardown(() => srv.close())
  const address = `ftp://127.0.0.1:${srv.port}/in`
  const env = { SHOAL_CSGW_USER: USER, SHOAL_CSGW_PASSWORD: PASSWORD }
  const small = join(work, 'small.txt')
  await writeFile(small, 'hello csgw\n')
  await new CsgwClient({ address, env }).upload(small, undefined, 'small.txt')
  t.equal(await readFile(join(srv.root, 'in', 'small.txt'), 'utf8'), 'hello csgw\n')

  const netrc = join(work, 'netrc')
  await writeFile(netrc, `machine 127.0.0.1\n  login ${USER}\n  password ${PASSWORD}\n`)
  const viaNetrc = new CsgwClient({ address, env: {}, netrcPath: netrc })
  t.same(
    (await viaNetrc.list()).map((e) => e.name),
    ['small.txt'],
  )

  // Cut the upload: abort it mid-way; the temp file goes.
  const ac = new AbortController()
  const f = await failure(
    new CsgwClient({ address, env }).upload(big, undefined, 'big.bin', {
      signal: ac.signal,
      onProgress: (p) => {
        if (p.bytes > MiB) ac.abort()
      },
    }),
  )
  t.equal(f.code, 'ABORTED', f.message)
  const deadline = Date.now() + 10_000
  while ((await readdir(join(srv.root, 'in'))).length > 1 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50))
  t.same(await readdir(join(srv.root, 'in')), ['small.txt'], 'neither the temp nor the final name remains')

  // A download cancelled mid-way: ABORTED, nothing at the destination, no temp file beside it.
  await new CsgwClient({ address, env }).upload(big, undefined, 'big.bin')
  const ac2 = new AbortController()
  const dest = join(work, 'aborted.bin')
  const g = await failure(
    new CsgwClient({ address, env }).download(undefined, 'big.bin', dest, {
      signal: ac2.signal,
      onProgress: (p) => {
        if (p.bytes > MiB) ac2.abort()
      },
    }),
  )
  t.equal(g.code, 'ABORTED', g.message)
  t.notOk(existsSync(dest))
  t.same(await leftovers(work, 'aborted.bin'), [])
})

t.test('ftps: explicit TLS round trip, certificate checked', async (t) => {
  const pem = await selfSignedCert()
  if (!pem) {
    t.comment('ftps test skipped: openssl not available')
    return
  }
  const srv = await startFtpSrv(USER, PASSWORD, pem)
  t.teardown(() => srv.close())
  const address = `ftps://127.0.0.1:${srv.port}/tls`
  const c = new CsgwClient({ address, user: USER, password: PASSWORD, env: {}, tls: { ca: pem.cert } })
  const small = join(work, 'tls.txt')
  await writeFile(small, 'over tls\n')
  await c.upload(small, undefined, 'tls.txt')
  const dest = join(work, 'tls-copy.txt')
  await c.download(undefined, 'tls.txt', dest)
  t.equal(await readFile(dest, 'utf8'), 'over tls\n')
  // Without our CA the self-signed certificate is refused: one line, no secret.
  const f = await failure(new CsgwClient({ address, user: USER, password: PASSWORD, env: {} }).list())
  t.equal(f.code, 'CSGW_UNAVAILABLE', f.message)
  t.match(f.message, /TLS with CSGW ftps:\/\/127\.0\.0\.1/)
  t.notOk(f.message.includes(PASSWORD))
})

t.test('unreachable and silent servers', async (t) => {
  const port = await closedPort()
  const f = await failure(
    new CsgwClient({ address: `ftp://u:topsecret@127.0.0.1:${port}/x`, env: {} }).list(),
  )
  t.equal(f.code, 'CSGW_UNAVAILABLE', f.message)
  t.match(f.message, new RegExp(`cannot reach CSGW ftp://127\\.0\\.0\\.1:${port}/x .*ECONNREFUSED`))
  t.notOk(f.message.includes('topsecret'), 'the password in the URL is never printed')
  t.notOk(f.message.includes('u:'), 'nor the user')

  // Accepts TCP and never greets: the connect timeout fires.
  const silent = createServer(() => {})
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => silent.close(r)))
  const held: import('node:net').Socket[] = []
  silent.on('connection', (s) => held.push(s))
  t.teardown(() => {
    for (const s of held) s.destroy()
  })
  const sport = (silent.address() as AddressInfo).port
  const g = await failure(
    new CsgwClient({ address: `ftp://127.0.0.1:${sport}/`, env: {}, connectTimeoutMs: 300 }).list(),
  )
  t.equal(g.code, 'TIMEOUT', g.message)
  t.match(g.message, /did not answer within 0\.3 s/)
})

function existsSyncTemp(dir: string): boolean {
  try {
    return readdirSync(dir).some((n) => /^\.big\.bin\.shoal-part-[0-9a-f]{12}$/.test(n))
  } catch {
    return false
  }
}

async function leftovers(dir: string, name: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.startsWith(`.${name}.shoal-part-`))
}

async function closedPort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const { port } = srv.address() as AddressInfo
  await new Promise((r) => srv.close(r))
  return port
}
