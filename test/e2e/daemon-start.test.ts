/**
 * A daemon that cannot start does not linger: started on a port another process holds, each
 * binary (and `shoal herd`, `shoal agent`) prints one line naming the port, stops what it had
 * already opened (lib/lifecycle startAll) and exits 1 by itself. A flag it does not know is a
 * usage error: one line, exit code 2, for daemons and CLIs alike. Runs the built binaries (dist/).
 */
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { join, resolve } from 'node:path'
import t, { type Test } from 'tap'
import { tempDir } from '../helpers/files.js'

/** How long a daemon that failed to start may take to exit (generous: the CPU is shared). */
const EXIT_DEADLINE_MS = 60_000

function run(args: string[]): Promise<{ code: number | null; stderr: string; lingered: boolean }> {
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, args, { cwd: resolve('.'), stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    let lingered = false
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
    })
    const timer = setTimeout(() => {
      lingered = true
      child.kill('SIGKILL')
    }, EXIT_DEADLINE_MS)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      done({ code, stderr, lingered })
    })
  })
}

/** A port on loopback held by a listening server until the test ends: the "port in use". */
async function busyPort(t: Test): Promise<number> {
  const server: Server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  return (server.address() as { port: number }).port
}

const bin = (name: string) => resolve('dist', 'cmd', `${name}.js`)
const IN_USE = (port: number) =>
  `cannot listen on 127.0.0.1:${port}: EADDRINUSE \\(another process is using it; pick another port in the config\\)`

interface Case {
  label: string
  part: string
  args: (port: number, dir: string) => Promise<string[]> | string[]
}

const local = ['--host', '127.0.0.1', '--log-level', 'warn']
const cases: Case[] = [
  {
    label: 'shoal-agent',
    part: 'agent',
    // The peer listener opens first and must be closed again.
    args: (p, dir) => [bin('shoal-agent'), ...local, '--port', `${p}`, '--peer-port', '0', '--data-dir', dir],
  },
  {
    label: 'shoal agent',
    part: 'agent',
    args: (p, dir) => [
      bin('shoal'),
      'agent',
      ...local,
      '--port',
      `${p}`,
      '--peer-port',
      '0',
      '--data-dir',
      dir,
    ],
  },
  {
    label: 'shoal-origin',
    part: 'origin',
    // The engine's peer listener opens first and must be closed again.
    args: (p, dir) => [
      bin('shoal-origin'),
      ...local,
      '--port',
      `${p}`,
      '--peer-port',
      '0',
      '--data-dir',
      dir,
    ],
  },
  {
    label: 'shoal-tracker',
    part: 'tracker',
    args: (p) => [bin('shoal-tracker'), ...local, '--port', `${p}`],
  },
  {
    label: 'shoal-build-index',
    part: 'build-index',
    args: (p) => [bin('shoal-build-index'), ...local, '--port', `${p}`],
  },
  { label: 'shoal-proxy', part: 'proxy', args: (p) => [bin('shoal-proxy'), ...local, '--port', `${p}`] },
  {
    label: 'shoal herd',
    part: 'proxy',
    // The proxy starts last: the origin, tracker and build-index must all be stopped again.
    args: async (p, dir) => {
      const config = join(dir, 'herd.yaml')
      await writeFile(
        config,
        `basePort: 0\nbindHost: 127.0.0.1\ndataDir: ${JSON.stringify(join(dir, 'herd'))}\nproxy:\n  server:\n    port: ${p}\n`,
      )
      return [bin('shoal'), 'herd', '--config', config, '--log-level', 'warn']
    },
  },
]

for (const c of cases) {
  t.test(`${c.label} on a port in use exits 1 with one line and leaves nothing open`, async (t) => {
    const port = await busyPort(t)
    const dir = await tempDir(t)
    const r = await run(await c.args(port, dir))
    t.notOk(r.lingered, `exits by itself within ${EXIT_DEADLINE_MS / 1000} s (no listener keeps it alive)`)
    t.equal(r.code, 1, 'exit code 1')
    t.match(r.stderr, new RegExp(`^${c.label}: ${c.part}: ${IN_USE(port)}\\n$`), 'one line naming the port')
  })
}

t.test('an unknown flag is a usage error: one line, exit code 2, daemons and CLIs alike', async (t) => {
  for (const [label, args] of [
    ['shoal-agent', [bin('shoal-agent')]],
    ['shoal-origin', [bin('shoal-origin')]],
    ['shoal-tracker', [bin('shoal-tracker')]],
    ['shoal-build-index', [bin('shoal-build-index')]],
    ['shoal-proxy', [bin('shoal-proxy')]],
    ['shoal', [bin('shoal'), 'agent']],
    ['shoal', [bin('shoal'), 'herd']],
    ['PullCLI', [bin('PullCLI'), 'pull', '--tag', 'h-/d-f', '--dst-path', '.']],
    ['PushCLI', [bin('PushCLI'), 'push']],
    ['RemoveCLI', [bin('RemoveCLI'), 'remove', '--tag', 'h-/d-f']],
  ] as const) {
    const r = await run([...args, '--bogus'])
    t.equal(r.code, 2, `${label} ${args.slice(1).join(' ')} --bogus exits 2`)
    t.equal(r.stderr, `${label}: unknown option '--bogus'\n`, 'one line naming the binary')
  }
})
