/**
 * What the CLIs say when the daemon they talk to misbehaves, over real sockets: a daemon that
 * resets or drops the connection is named with its address, and a `--timeout` that runs out
 * says "timed out after N s" and exits 124 (not "aborted", not 1).
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { createServer as createHttpServer } from 'node:http'
import { createServer, type Server, type Socket } from 'node:net'
import { join, resolve } from 'node:path'
import t, { type Test } from 'tap'
import { AgentClient } from '../../lib/agent/client/index.js'
import { type Output, runCli } from '../../lib/cli/common.js'
import { pullProgram, pushProgram, removeProgram } from '../../lib/cli/programs.js'
import { Digest, Tag } from '../../lib/core/index.js'
import { tempDir } from '../helpers/files.js'

const TAG = 'h-/d-f.txt:v1'

/** A TCP server on loopback that does `onData` with each connection's first bytes. */
async function tcpServer(t: Test, onData: (socket: Socket) => void): Promise<string> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
    socket.once('data', () => onData(socket))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  )
  return `127.0.0.1:${(server.address() as { port: number }).port}`
}

async function run(
  program: ReturnType<typeof pullProgram>,
  args: string[],
): Promise<{ code: number; err: string }> {
  const lines: string[] = []
  const io: Output = { out: () => {}, err: (line) => lines.push(line) }
  const code = await runCli(program, ['node', 'cli', ...args], io)
  return { code, err: lines.join('\n') }
}

t.test('a daemon that resets the connection is named, with its address', async (t) => {
  const dir = await tempDir(t)
  const reset = await tcpServer(t, (s) => s.resetAndDestroy())
  const path = `/tags/${Tag.parse(TAG)}`
  await t.rejects(new AgentClient(reset).resolve(Tag.parse(TAG)), {
    code: 'UNAVAILABLE',
    message: `the agent at ${reset} closed the connection during GET ${path} (ECONNRESET); is it running? see its log`,
  })
  const r = await run(pullProgram(), ['pull', '--tag', TAG, '--dst-path', dir, '--dst-host', reset])
  t.equal(r.code, 6, 'UNAVAILABLE exits 6')
  t.equal(
    r.err,
    `PullCLI: the agent at ${reset} closed the connection during GET ${path} (ECONNRESET); is it running? see its log`,
    'one line naming the agent',
  )

  // Closing without an answer (a crash between accept and reply) reads the same.
  const closed = await tcpServer(t, (s) => s.end())
  const rm = await run(removeProgram(), ['remove', '--tag', TAG, '--dst-host', closed])
  t.equal(rm.code, 6)
  t.match(
    rm.err,
    new RegExp(`^RemoveCLI: the proxy at ${closed} closed the connection during DELETE .*UND_ERR_SOCKET`),
  )
})

t.test('an agent that goes away in the middle of the blob is named too', async (t) => {
  const dir = await tempDir(t)
  const digest = Digest.fromBuffer(Buffer.from('the whole file'))
  const server = createHttpServer((req, res) => {
    if (req.url?.startsWith('/tags/')) {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ digest: digest.toString() }))
      return
    }
    if (req.url?.endsWith('/file')) {
      // An agent without the cache-file route: the blob is streamed.
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ code: 'NOT_FOUND', message: 'no route' }))
      return
    }
    res.writeHead(200, { 'content-length': 1000 })
    res.write('the whole')
    setTimeout(() => req.socket.resetAndDestroy(), 20)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const agent = `127.0.0.1:${(server.address() as { port: number }).port}`
  const r = await run(pullProgram(), ['pull', '--tag', TAG, '--dst-path', dir, '--dst-host', agent])
  t.equal(r.code, 6)
  t.match(
    r.err,
    new RegExp(
      `^PullCLI: the agent at ${agent} closed the connection during GET /namespace/default/blobs/${digest} ` +
        '\\((ECONNRESET|UND_ERR_SOCKET)\\); is it running\\? see its log$',
    ),
  )
})

t.test('--timeout against a daemon that never answers: "timed out after N s", exit 124', async (t) => {
  const dir = await tempDir(t)
  const silent = await tcpServer(t, () => {})
  const pulled = await run(pullProgram(), [
    'pull',
    '--tag',
    TAG,
    '--dst-path',
    dir,
    '--dst-host',
    silent,
    '--timeout',
    '0.3',
  ])
  t.equal(pulled.code, 124, 'PullCLI exits 124')
  t.match(
    pulled.err,
    new RegExp(
      `^PullCLI: pull of ${TAG.replace(/[.]/g, '\\.')} timed out after 0\\.3 s without progress ` +
        `\\(the agent at ${silent} had not answered GET /tags/.* when the time ran out\\)$`,
    ),
  )
  t.notMatch(pulled.err, /abort/i)

  const removed = await run(removeProgram(), [
    'remove',
    '--tag',
    TAG,
    '--dst-host',
    silent,
    '--timeout',
    '0.3',
  ])
  t.equal(removed.code, 124)
  t.match(
    removed.err,
    /^RemoveCLI: remove of .* timed out after 0\.3 s \(the proxy at .* had not answered DELETE/,
  )

  const src = join(dir, 'x.txt')
  await writeFile(src, 'x')
  const pushed = await run(pushProgram(), [
    'push',
    '--src-path',
    src,
    '--dst-host',
    silent,
    '--timeout',
    '0.3',
  ])
  t.equal(pushed.code, 124)
  t.match(pushed.err, new RegExp(`^PushCLI: push of ${src} timed out after 0\\.3 s`))
})

t.test('the PullCLI binary exits 124 on --timeout', async (t) => {
  const dir = await tempDir(t)
  const silent = await tcpServer(t, () => {})
  const child = spawn(
    process.execPath,
    [
      '--import=tsx',
      resolve('cmd/PullCLI.ts'),
      'pull',
      '--tag',
      TAG,
      '--dst-path',
      dir,
      '--dst-host',
      silent,
      '--timeout',
      '0.5',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  const [code] = await once(child, 'exit')
  t.equal(code, 124)
  t.match(stderr, /^PullCLI: pull of .* timed out after 0\.5 s without progress \(the agent at .*\)\n$/)
})
