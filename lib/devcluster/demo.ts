/**
 * The main job (`npm start` → `shoal demo`): a devcluster with 3 agents, a 64 MiB file pushed
 * with PushCLI, pulled on every agent with PullCLI at the same time, every copy's sha256
 * checked, a table of who got bytes from where, then the cluster stopped.
 */
import { execFile } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { AgentClient } from '../agent/client/index.js'
import { Digest, digestFile } from '../core/index.js'
import { ShoalError } from '../errors/index.js'
import { down, up } from './index.js'
import { builtBinary, checkPorts } from './layout.js'

const run = promisify(execFile)

export interface DemoOptions {
  workdir?: string
  agents?: number
  sizeMiB?: number
  /** The herd's first port (the proxy); as `shoal devcluster up --base-port`. */
  basePort?: number
  /** Agent N's ports start at this + 1000·(N−1); as `shoal devcluster up --agent-base-port`. */
  agentBasePort?: number
  out?: (line: string) => void
}

export interface DemoRow {
  agent: string
  seconds: number
  bytesFromOrigins: number
  bytesFromAgents: number
  verified: boolean
}

export async function demo(opts: DemoOptions = {}): Promise<DemoRow[]> {
  const out = opts.out ?? ((l: string) => process.stdout.write(`${l}\n`))
  const workdir = resolve(opts.workdir ?? '.shoal/demo')
  const agents = opts.agents ?? 3
  const size = (opts.sizeMiB ?? 64) << 20
  // Before anything is deleted: a bad port choice changes nothing.
  checkPorts(agents, opts.basePort, opts.agentBasePort)
  await down({ workdir })
  await rm(workdir, { recursive: true, force: true })
  await mkdir(join(workdir, 'input'), { recursive: true })

  out(`starting a devcluster (herd + ${agents} agents) in ${workdir}`)
  const state = await up({ workdir, agents, basePort: opts.basePort, agentBasePort: opts.agentBasePort })
  const proxy = state.processes.find((p) => p.name === 'herd')?.ports.proxy
  try {
    const file = join(workdir, 'input', 'reference-data.bin')
    await writeRandomFile(file, size)
    const source = await digestFile(file)
    out(`generated ${file} (${size >> 20} MiB, ${source.digest})`)

    const pushed = await run(process.execPath, [
      builtBinary('PushCLI'),
      'push',
      '--src-path',
      file,
      '--src-host',
      '127.0.0.1',
      '--dst-host',
      `127.0.0.1:${proxy}`,
    ])
    process.stdout.write(pushed.stdout)
    const tag = /^tag:\s+(.+)$/m.exec(pushed.stdout)?.[1]
    if (!tag) throw new ShoalError('INTERNAL', `PushCLI printed no tag: ${pushed.stdout}`)

    const agentProcs = state.processes.filter((p) => p.name.startsWith('agent-'))
    const rows = await Promise.all(
      agentProcs.map(async (p) => {
        const dst = join(workdir, 'output', p.name)
        const started = Date.now()
        await run(process.execPath, [
          builtBinary('PullCLI'),
          'pull',
          '--tag',
          tag,
          '--dst-path',
          dst,
          '--dst-host',
          `127.0.0.1:${p.ports.server}`,
        ])
        const seconds = (Date.now() - started) / 1000
        const copy = await digestFile(join(dst, 'reference-data.bin'))
        const progress = await new AgentClient(`127.0.0.1:${p.ports.server}`).progress(
          Digest.parse(source.digest.toString()),
        )
        return {
          agent: p.name,
          seconds,
          bytesFromOrigins: progress.bytesFromOrigins,
          bytesFromAgents: progress.bytesFromAgents,
          verified: copy.digest.equals(source.digest) && copy.size === size,
        }
      }),
    )
    printTable(rows, out)
    return rows
  } finally {
    await down({ workdir })
    out(`devcluster stopped; logs are in ${join(workdir, 'logs')}`)
  }
}

async function writeRandomFile(path: string, size: number): Promise<void> {
  const stream = createWriteStream(path)
  const chunk = Buffer.allocUnsafe(1 << 20)
  for (let written = 0; written < size; written += chunk.length) {
    randomFillSync(chunk)
    const n = Math.min(chunk.length, size - written)
    if (!stream.write(Buffer.from(chunk.subarray(0, n))))
      await new Promise<void>((r) => stream.once('drain', () => r()))
  }
  await new Promise<void>((res, rej) => stream.end((err?: Error | null) => (err ? rej(err) : res())))
}

function printTable(rows: DemoRow[], out: (l: string) => void): void {
  const header = ['agent', 'seconds', 'bytes from origin', 'bytes from agents', 'sha256']
  const lines = rows.map((r) => [
    r.agent,
    r.seconds.toFixed(2),
    String(r.bytesFromOrigins),
    String(r.bytesFromAgents),
    r.verified ? 'ok' : 'MISMATCH',
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)))
  const fmt = (cols: string[]) =>
    cols.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ')
  out('')
  out(fmt(header))
  out(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const l of lines) out(fmt(l))
  out('')
}
