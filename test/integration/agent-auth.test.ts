/**
 * The agent API's tokens (lib/auth): on loopback nothing changes; bound beyond loopback the
 * agent refuses to start without tokens, and requests from other hosts need one, reads too,
 * while /health stays open for probes. Clients send theirs with AgentClient's `token`.
 */
import { writeFile } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { AgentClient } from '../../lib/agent/client/index.js'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { AgentServer } from '../../lib/agent/server/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { startTestAgent } from '../helpers/agent.js'
import { tempDir } from '../helpers/files.js'
import { deadAddress } from '../helpers/pull-cluster.js'

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
