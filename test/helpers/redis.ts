/**
 * A real redis-server for a test: spawned on a unix socket in a temp folder (no TCP port, so no
 * port luck), nothing persisted, killed when the test ends. restart() stops it and starts a new
 * one on the same socket (the "Redis restarted mid-distribution" case); its data is gone.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestRedis {
  /** The socket path: a RedisConfig url. */
  url: string
  stop(): Promise<void>
  restart(): Promise<void>
}

export async function startTestRedis(t: { teardown(fn: () => unknown): void }): Promise<TestRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-redis-'))
  const url = join(dir, 'redis.sock')
  let proc: ChildProcess | undefined
  const start = async () => {
    const p = spawn(
      'redis-server',
      [
        '--port',
        '0',
        '--unixsocket',
        url,
        '--unixsocketperm',
        '700',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    proc = p
    let stderr = ''
    p.stderr?.on('data', (d) => {
      stderr += d
    })
    const spawned = new Promise<never>((_, reject) => {
      p.once('error', (err) =>
        reject(
          new Error(`cannot run redis-server (${err.message}); install it: apt-get install redis-server`),
        ),
      )
      p.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${stderr}`)))
    })
    spawned.catch(() => {})
    const deadline = Date.now() + 10_000
    for (;;) {
      if (await stat(url).catch(() => undefined)) return
      if (Date.now() > deadline) throw new Error(`redis-server did not create ${url} within 10 s: ${stderr}`)
      await Promise.race([spawned, new Promise((r) => setTimeout(r, 20))])
    }
  }
  const stop = async () => {
    const p = proc
    proc = undefined
    if (!p || p.exitCode !== null) return
    const exited = new Promise((r) => p.once('exit', r))
    p.kill('SIGKILL')
    await exited
    await rm(url, { force: true })
  }
  await start()
  t.teardown(async () => {
    await stop()
    await rm(dir, { recursive: true, force: true })
  })
  return {
    url,
    stop,
    restart: async () => {
      await stop()
      await start()
    },
  }
}
