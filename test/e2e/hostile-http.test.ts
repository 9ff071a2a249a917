/**
 * Every daemon's routes against over-limit, unread and stalled bodies, on real sockets: each
 * request is answered (never with a 5xx), its connection ends, and every daemon keeps serving. A
 * daemon that crashed here would take the test process down with it.
 */
import { join } from 'node:path'
import t from 'tap'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { AgentServer } from '../../lib/agent/server/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { HttpClient } from '../../lib/http/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { tempDir } from '../helpers/files.js'
import { startTestHerd } from '../helpers/herd.js'
import { rawConnect, within } from '../helpers/raw-http.js'

// One digest per daemon: uploads the origin routes start would make the proxy's push of the
// same digest wait for them (one upload per digest).
const digest = (byte: string) => `sha256:${byte.repeat(32)}`
const BIG = 5 << 20

/** Requests that carry a body, or a body no route expects, for each daemon. */
const ROUTES: Record<string, Array<[method: string, path: string]>> = {
  origin: [
    ['PUT', '/bandwidth'],
    ['POST', `/namespace/default/blobs/${digest('0a')}/uploads`],
    ['PATCH', `/namespace/default/blobs/${digest('0a')}/uploads/nope`],
    ['PUT', `/namespace/default/blobs/${digest('0a')}/uploads/nope`],
    ['GET', '/health'],
  ],
  proxy: [
    ['PUT', `/proxy/namespace/default/blobs/${digest('0b')}`],
    ['PUT', `/proxy/tags/h-%2Fd-f%3Av1/digest/${digest('0b')}`],
    ['GET', '/health'],
  ],
  buildIndex: [
    ['PUT', `/tags/h-%2Fd-f%3Av1/digest/${digest('0c')}`],
    ['GET', '/health'],
  ],
  tracker: [
    ['GET', '/announce'],
    ['GET', '/health'],
  ],
  agent: [
    ['PUT', '/bandwidth'],
    ['DELETE', `/blobs/${digest('0d')}`],
    ['GET', '/health'],
  ],
}

function requests(method: string, path: string): Record<string, string> {
  const head = `${method} ${path} HTTP/1.1\r\nhost: x\r\n`
  return {
    'chunked, 5 MiB': `${head}transfer-encoding: chunked\r\n\r\n${BIG.toString(16)}\r\n${'0'.repeat(BIG)}\r\n0\r\n\r\n`,
    'content-length, 5 MiB sent': `${head}content-length: ${BIG}\r\n\r\n${'0'.repeat(BIG)}`,
    'content-length, 1 GiB declared, 1 byte sent': `${head}content-length: ${1 << 30}\r\n\r\n0`,
    'content-length 1, nothing sent': `${head}content-length: 1\r\n\r\n`,
  }
}

t.test('hostile bodies on every route of every daemon', async (t) => {
  const dir = await tempDir(t)
  // A short idle timeout, so the stalled bodies below are answered (408) within a second.
  const herd = await startTestHerd(t, dir, { server: { idleTimeoutMs: 1000 } })
  const agent = new AgentServer(
    validateConfig(AgentConfigSchema, {
      server: { port: 0, idleTimeoutMs: 1000 },
      peer: { host: '127.0.0.1', port: 0 },
      dataDir: join(dir, 'agent'),
      trackers: [herd.urls.tracker],
      buildIndex: herd.urls.buildIndex,
    }),
    { logger: silentLogger() },
  )
  await agent.start()
  t.teardown(() => agent.stop())
  const urls: Record<string, string> = { ...herd.urls, agent: agent.url }

  const allHealthy = async () => {
    for (const [name, url] of Object.entries(urls)) {
      const health = await new HttpClient(url, { name }).json('GET', '/health')
      if ((health as { status?: string }).status !== 'ok') return `${name}: ${JSON.stringify(health)}`
    }
    return 'ok'
  }

  for (const [daemon, routes] of Object.entries(ROUTES)) {
    const port = Number(new URL(urls[daemon] as string).port)
    for (const [method, path] of routes) {
      for (const [kind, request] of Object.entries(requests(method, path))) {
        const what = `${daemon} ${method} ${path.slice(0, 40)} (${kind})`
        const c = rawConnect(port)
        await c.connected
        c.sock.write(request)
        t.ok(await within(c.closed, 30_000), `${what}: connection ends`)
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(c.received())?.[1])
        t.ok(status >= 200 && status < 500, `${what}: answered ${status}`)
      }
      t.equal(await allHealthy(), 'ok', `every daemon serves after ${daemon} ${method} ${path.slice(0, 40)}`)
    }
  }
})
