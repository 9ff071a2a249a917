/**
 * For the OneX node tests: GoQuorum-format genesis files, the example node program as a real
 * process (its port read from its port file, never guessed), the image packed by the real
 * pack-image script, hand-made ustar tarballs (hostile ones included), and polling with a deadline.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { tempDir as filesTempDir } from './files.js'
import { until } from './until.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '../..')
export const NODE_PROGRAM = join(root, 'examples/onex/node/node.mjs')
export const PACK_SCRIPT = join(root, 'examples/onex/pack-image.mjs')
export const HUNDRED_ETH = '100000000000000000000'

type Teardown = { teardown(fn: () => unknown): void }

/** A fresh folder, removed when the test ends. */
export function tempDir(t: Teardown): Promise<string> {
  return filesTempDir(t, 'onex-node-')
}

export { until }

/** Accounts 0x…01 … 0x…0n, each 100 ETH, in GoQuorum's genesis format (raft: difficulty 0). */
export function genesisDoc(accounts = 10, chainId = 1337): { doc: object; addresses: string[] } {
  const addresses = Array.from({ length: accounts }, (_, i) => `0x${(i + 1).toString(16).padStart(40, '0')}`)
  const doc = {
    config: {
      chainId,
      homesteadBlock: 0,
      byzantiumBlock: 0,
      constantinopleBlock: 0,
      petersburgBlock: 0,
      istanbulBlock: 0,
      eip150Block: 0,
      eip155Block: 0,
      eip158Block: 0,
      isQuorum: true,
    },
    alloc: Object.fromEntries(addresses.map((a) => [a, { balance: HUNDRED_ETH }])),
    coinbase: '0x0000000000000000000000000000000000000000',
    difficulty: '0x0',
    extraData: `0x${'0'.repeat(64)}`,
    gasLimit: '0xE0000000',
    mixhash: '0x00000000000000000000000000000000000000647572616c65787365646c6578',
    nonce: '0x0',
    parentHash: `0x${'0'.repeat(64)}`,
    timestamp: '0x00',
  }
  return { doc, addresses }
}

export async function writeGenesis(path: string, accounts = 10, chainId = 1337): Promise<string[]> {
  const { doc, addresses } = genesisDoc(accounts, chainId)
  await writeFile(path, JSON.stringify(doc, null, 2))
  return addresses
}

export async function writeStaticNodes(path: string, nodes: { id: string; port: number }[]): Promise<void> {
  const list = nodes.map((n) => `enode://${n.id}@127.0.0.1:${n.port}`)
  await writeFile(`${path}.tmp`, JSON.stringify(list))
  await rename(`${path}.tmp`, path)
}

export interface NodeProc {
  id: string
  child: ChildProcess
  port: number
  url: string
}

/** The example node program as a process, stopped (SIGKILL) when the test ends. */
export async function startNodeProgram(
  t: Teardown,
  o: { dir: string; id: string; genesis: string; staticNodes: string; intervalMs?: number },
): Promise<NodeProc> {
  const portFile = join(o.dir, `${o.id}.port`)
  const child = spawn(
    process.execPath,
    [
      NODE_PROGRAM,
      ...['--node-id', o.id, '--genesis', o.genesis, '--static-nodes', o.staticNodes],
      ...['--port-file', portFile, '--data-dir', join(o.dir, `${o.id}-data`)],
      ...['--block-interval-ms', String(o.intervalMs ?? 100)],
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  )
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const port = await until(`node ${o.id} writes its port file`, async () => {
    if (child.exitCode !== null) throw new Error(`node ${o.id} exited with ${child.exitCode}`)
    return JSON.parse(await readFile(portFile, 'utf8')).port as number
  })
  return { id: o.id, child, port, url: `http://127.0.0.1:${port}` }
}

export async function getJson<T = Record<string, unknown>>(
  url: string,
): Promise<{ status: number; body: T }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) })
  return { status: res.status, body: (await res.json()) as T }
}

/** Runs the real pack script; the tarball's path, digest and bytes. */
export async function packExampleImage(
  out: string,
): Promise<{ path: string; digest: string; bytes: Buffer }> {
  const { stdout } = await promisify(execFile)(process.execPath, [PACK_SCRIPT, '--out', out])
  const digest = stdout.split(/\s+/)[0] ?? ''
  return { path: out, digest, bytes: await readFile(out) }
}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

export interface TarEntry {
  name: string
  /** '0' file (default), '5' folder, '2' symlink, '1' hard link, '6' FIFO, 'x' pax header... */
  type?: string
  data?: Buffer | string
  link?: string
  mode?: number
  /** Override the size field (a header that lies about its data). */
  size?: number
}

/** A ustar tarball with exactly these entries (no checks: hostile ones are the point). */
export function tarOf(entries: TarEntry[], opts: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = []
  for (const e of entries) {
    const data = Buffer.from(e.data ?? '')
    const h = Buffer.alloc(512)
    const octal = (n: number, len: number) => `${n.toString(8).padStart(len - 1, '0')}\0`
    h.write(e.name, 0, 100)
    h.write(octal(e.mode ?? 0o644, 8), 100)
    h.write(octal(0, 8), 108)
    h.write(octal(0, 8), 116)
    h.write(octal(e.size ?? data.length, 12), 124)
    h.write(octal(0, 12), 136)
    h.fill(0x20, 148, 156)
    h.write(e.type ?? '0', 156, 1)
    if (e.link) h.write(e.link, 157, 100)
    h.write('ustar\0', 257)
    h.write('00', 263)
    let sum = 0
    for (const b of h) sum += b
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148)
    parts.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512))
  }
  if (opts.end !== false) parts.push(Buffer.alloc(1024))
  return Buffer.concat(parts)
}

/** A PullBlob over a map of digest → bytes (the runner's unit of supply in tests without an agent). */
export function mapPullBlob(blobs: Map<string, Buffer>, served: Buffer | undefined = undefined) {
  return async (digest: string, dest: string): Promise<void> => {
    const bytes = served ?? blobs.get(digest)
    if (!bytes) throw new Error(`no blob ${digest}`)
    await writeFile(dest, bytes, { flag: 'wx' })
  }
}
