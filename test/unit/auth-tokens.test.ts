/**
 * lib/auth TokenAuth: tokens from files, access levels, loopback-only writes without tokens,
 * rotation by re-reading a changed file (a Kubernetes Secret's symlink swap included), a bad
 * new file keeping the old token, and nothing of a token in any error.
 */

import { rename, symlink, writeFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { AuthConfig, TokenAuth } from '../../lib/auth/index.js'
import { tempDir } from '../helpers/files.js'

const A = 'token-a-0123456789abcdef'
const B = 'token-b-0123456789abcdef'

function req(authorization?: string, remoteAddress = '10.0.0.5'): IncomingMessage {
  return {
    headers: authorization ? { authorization } : {},
    socket: { remoteAddress },
  } as unknown as IncomingMessage
}

function code(fn: () => unknown): string | undefined {
  try {
    fn()
    return undefined
  } catch (err) {
    return (err as { code?: string }).code
  }
}

t.test('tokens from files: access levels, bad and missing tokens', async (t) => {
  const dir = await tempDir(t, 'shoal-auth-')
  await writeFile(join(dir, 'admin'), `${A}\n`)
  await writeFile(join(dir, 'reader'), B)
  const auth = await TokenAuth.load(
    AuthConfig.parse({
      tokens: [
        { name: 'admin', file: join(dir, 'admin') },
        { name: 'reader', file: join(dir, 'reader'), access: 'read' },
      ],
    }),
    { configKey: 'proxy.auth.tokens' },
  )
  t.equal(auth.enabled, true)
  t.equal(auth.check(req(`Bearer ${A}`), true), 'admin', 'a write token writes, named')
  t.equal(auth.check(req(`bearer   ${B} `), false), 'reader', 'a read token reads (scheme case, spaces)')
  t.equal(
    code(() => auth.check(req(`Bearer ${B}`), true)),
    'FORBIDDEN',
    'a read token may not write',
  )
  t.equal(
    code(() => auth.check(req('Bearer wrong-token-0123456789'), true)),
    'UNAUTHORIZED',
  )
  t.equal(
    code(() => auth.check(req(undefined, '127.0.0.1'), true)),
    'UNAUTHORIZED',
    'loopback needs a token once tokens exist',
  )
  t.equal(auth.check(req(), false), 'anonymous', 'reads are open unless readsNeedToken')
  t.equal(
    code(() => auth.check(req(`Bearer ${'x'.repeat(5000)}`), true)),
    'UNAUTHORIZED',
    'an oversized header is no token',
  )
  try {
    auth.check(req('Bearer wrong-token-0123456789'), true)
  } catch (err) {
    const text = `${(err as Error).message} ${JSON.stringify(err)}`
    t.notOk(text.includes(A) || text.includes(B) || text.includes('wrong-token'), 'no token in the error')
    t.match((err as Error).message, /proxy\.auth\.tokens/, 'the error names where tokens are configured')
  }
})

t.test('without tokens: writes from loopback only; readsNeedToken needs a token', async (t) => {
  const auth = await TokenAuth.load(AuthConfig.parse({}), { configKey: 'agent.auth.tokens' })
  t.equal(auth.check(req(undefined, '::ffff:127.0.0.1'), true), 'anonymous')
  t.equal(
    code(() => auth.check(req(undefined, '10.1.1.1'), true)),
    'FORBIDDEN',
  )
  await t.rejects(TokenAuth.load(AuthConfig.parse({ readsNeedToken: true })), { code: 'CONFIG_INVALID' })
})

t.test('bad token files stop the start with the file named, not the content', async (t) => {
  const dir = await tempDir(t, 'shoal-auth-')
  await writeFile(join(dir, 'short'), 'abc')
  await t.rejects(TokenAuth.load(AuthConfig.parse({ tokens: [{ name: 'x', file: join(dir, 'short') }] })), {
    code: 'CONFIG_INVALID',
    message: /short.*16\.\.1024/,
  })
  await t.rejects(TokenAuth.load(AuthConfig.parse({ tokens: [{ name: 'x', file: join(dir, 'missing') }] })), {
    code: 'CONFIG_INVALID',
    message: /cannot read the token file of "x"/,
  })
})

t.test('rotation: a changed file is read again; a bad new file keeps the old token', async (t) => {
  const dir = await tempDir(t, 'shoal-auth-')
  const file = join(dir, 'token')
  await writeFile(file, A)
  const reloaded: string[] = []
  const errors: string[] = []
  const auth = await TokenAuth.load(AuthConfig.parse({ tokens: [{ name: 'ops', file }] }), {
    onReload: (name) => reloaded.push(name),
    onReloadError: (name, _file, reason) => errors.push(`${name}: ${reason}`),
  })
  await auth.reload()
  t.same(reloaded, [], 'an unchanged file is not read again')

  await writeFile(join(dir, 'next'), B)
  await rename(join(dir, 'next'), file)
  await auth.reload()
  t.same(reloaded, ['ops'])
  t.equal(auth.check(req(`Bearer ${B}`), true), 'ops', 'the new token works')
  t.equal(
    code(() => auth.check(req(`Bearer ${A}`), true)),
    'UNAUTHORIZED',
    'the old one no longer does',
  )

  await writeFile(file, 'half')
  await auth.reload()
  t.equal(errors.length, 1, 'a bad new file is reported')
  t.notOk(errors[0]?.includes('half'), 'without its content')
  t.equal(auth.check(req(`Bearer ${B}`), true), 'ops', 'and the last good token stays')
  await auth.reload()
  t.equal(errors.length, 1, 'once, not at every check')
})

t.test("rotation through a Kubernetes Secret's symlink swap", async (t) => {
  const dir = await tempDir(t, 'shoal-auth-')
  await writeFile(join(dir, 'v1'), A)
  await writeFile(join(dir, 'v2'), B)
  await symlink(join(dir, 'v1'), join(dir, 'data'))
  const file = join(dir, 'token')
  await symlink(join(dir, 'data'), file)
  const auth = await TokenAuth.load(AuthConfig.parse({ tokens: [{ name: 'k8s', file }] }))
  t.equal(auth.check(req(`Bearer ${A}`), true), 'k8s')
  await symlink(join(dir, 'v2'), join(dir, 'data.new'))
  await rename(join(dir, 'data.new'), join(dir, 'data'))
  await auth.reload()
  t.equal(auth.check(req(`Bearer ${B}`), true), 'k8s', 'the swapped-in token works')
})

t.test('start checks on a timer; stop ends it', async (t) => {
  const dir = await tempDir(t, 'shoal-auth-')
  const file = join(dir, 'token')
  await writeFile(file, A)
  const auth = await TokenAuth.load(AuthConfig.parse({ tokens: [{ name: 'ops', file }], reloadSeconds: 1 }))
  await auth.start()
  t.teardown(() => auth.stop())
  await writeFile(file, B)
  const deadline = Date.now() + 20_000
  while (code(() => auth.check(req(`Bearer ${B}`), true)) !== undefined) {
    if (Date.now() > deadline) throw new Error('the changed token file was not read again')
    await new Promise((r) => setTimeout(r, 100))
  }
  t.pass('the new token is taken without a call to reload()')
  await auth.stop()
})
