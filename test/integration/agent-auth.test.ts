/**
 * The agent API's tokens (lib/auth): on loopback nothing changes; bound beyond loopback the
 * agent refuses to start without tokens, and requests from other hosts need one, reads too,
 * while /health stays open for probes. Clients send theirs with AgentClient's `token`.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { AgentClient } from '../../lib/agent/client/index.js'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { AgentServer } from '../../lib/agent/server/index.js'
import { pullProgram } from '../../lib/cli/programs.js'
import { validateConfig } from '../../lib/config/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { startTestAgent } from '../helpers/agent.js'
import { cliRunner } from '../helpers/cli-run.js'
import { tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'
import { deadAddress, pushBytes } from '../helpers/pull-cluster.js'

const TOKEN = 'agent-token-0123456789abcdef'

function externalAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  return undefined
}
const ext = externalAddress()

t.test('bound beyond loopback without tokens: the agent does not start, and says why', async (t) => {
  const dir = await tempDir(t, 'shoal-agent-auth-')
  const down = await deadAddress()
  const agent = new AgentServer(
    validateConfig(AgentConfigSchema, {
      server: { host: '0.0.0.0', port: 0 },
      peer: { host: '127.0.0.1', port: 0 },
      dataDir: join(dir, 'a'),
      trackers: [down],
      buildIndex: down,
    }),
    { logger: silentLogger() },
  )
  await t.rejects(agent.start(), {
    code: 'CONFIG_INVALID',
    message: /bound to 0\.0\.0\.0, beyond loopback, but no token is configured: set auth\.tokens/,
  })
})

t.test(
  'bound beyond loopback with a token: other hosts need it, local reads do not',
  { skip: ext === undefined && 'this machine has no non-loopback IPv4 address' },
  async (t) => {
    const dir = await tempDir(t, 'shoal-agent-auth-')
    await writeFile(join(dir, 'ops.token'), TOKEN)
    const down = await deadAddress()
    const agent = await startTestAgent(t, {
      dataDir: join(dir, 'a'),
      trackers: [down],
      buildIndex: down,
      settings: {
        server: { host: '0.0.0.0', port: 0 },
        auth: { tokens: [{ name: 'ops', file: join(dir, 'ops.token') }] },
      },
    })
    const port = new URL(agent.url).port
    const remote = (token?: string) => new AgentClient(`http://${ext}:${port}`, { timeoutMs: 5000, token })
    const local = (token?: string) => new AgentClient(`http://127.0.0.1:${port}`, { timeoutMs: 5000, token })

    await t.rejects(
      remote().http.json('GET', '/bandwidth'),
      { code: 'UNAUTHORIZED' },
      'a remote read needs a token',
    )
    await t.rejects(remote('wrong-token-0123456789').http.json('GET', '/bandwidth'), { code: 'UNAUTHORIZED' })
    t.ok(await remote(TOKEN).http.json('GET', '/bandwidth'), 'a remote read with the token is served')
    t.ok(await local().http.json('GET', '/bandwidth'), 'a local read needs none')
    await t.rejects(
      local().http.json('PUT', '/bandwidth', { json: { egressBytesPerSec: 0 } }),
      { code: 'UNAUTHORIZED' },
      'a local write needs the token once tokens are configured',
    )
    t.ok(
      await local(TOKEN).http.json('PUT', '/bandwidth', { json: { egressBytesPerSec: 0 } }),
      'with it, it is done',
    )
    t.equal((await fetch(`http://${ext}:${port}/health`)).status, 200, '/health stays open for probes')
  },
)

t.test('on loopback (the default) without tokens: reads and writes from local clients', async (t) => {
  const dir = await tempDir(t, 'shoal-agent-auth-')
  const down = await deadAddress()
  const agent = await startTestAgent(t, { dataDir: join(dir, 'a'), trackers: [down], buildIndex: down })
  const client = new AgentClient(agent.url, { timeoutMs: 5000 })
  t.ok(await client.http.json('GET', '/bandwidth'))
  t.ok(await client.http.json('PUT', '/bandwidth', { json: { egressBytesPerSec: 0 } }))
})

t.test(
  'PullCLI sends the client config token to an agent bound beyond loopback',
  { skip: ext === undefined && 'this machine has no non-loopback IPv4 address' },
  async (t) => {
    const dir = await tempDir(t, 'shoal-agent-auth-')
    await writeFile(join(dir, 'ops.token'), TOKEN)
    const herd = await startTestHerd(t, dir)
    const agent = await startTestAgent(t, {
      herd,
      dataDir: join(dir, 'a'),
      settings: {
        server: { host: '0.0.0.0', port: 0 },
        auth: { tokens: [{ name: 'ops', file: join(dir, 'ops.token') }] },
      },
    })
    const { tag } = await pushBytes(herd, dir, 'prices.csv', Buffer.from('symbol,price\nABC,1\n'))
    const agentAddress = `${ext}:${new URL(agent.url).port}`
    const run = cliRunner(dir)
    const without = await run(pullProgram, [
      'pull',
      '--tag',
      tag.toString(),
      '--dst-path',
      join(dir, 'no'),
      '--dst-host',
      agentAddress,
    ])
    t.equal(without.code, 8, 'without a token: refused (exit 8)')
    t.match(without.err, /Authorization: Bearer/)
    const withToken = await run(
      pullProgram,
      ['pull', '--tag', tag.toString(), '--dst-path', join(dir, 'yes'), '--dst-host', agentAddress],
      { env: { SHOAL_TOKEN_FILE: join(dir, 'ops.token') } },
    )
    t.equal(withToken.code, 0, `with SHOAL_TOKEN_FILE: pulled (${withToken.err.trim()})`)
    t.equal(await readFile(join(dir, 'yes', 'prices.csv'), 'utf8'), 'symbol,price\nABC,1\n')
  },
)
