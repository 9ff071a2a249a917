/**
 * A real herd process (the built `shoal herd`) with `plugins: { onex: {...} }` in its config
 * file, driven through `shoal onex`: apply -f a Chain and a MinerSet, get as a table and as
 * JSON/YAML, scale through /scale, get --watch, deletion protection (403 → exit code 8), delete.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { parse } from 'yaml'
import { ResourceClient } from '../../lib/apiserver/client/index.js'
import { onexCommand } from '../../lib/cli/onex-program.js'
import { Digest } from '../../lib/core/index.js'
import { builtBinary } from '../../lib/devcluster/layout.js'
import {
  HOST_NAMESPACE,
  HostKind,
  type HostSpecT,
  type HostStatusT,
  MinerKind,
  MinerSetKind,
} from '../../lib/onex/kinds.js'
import { ProxyClient } from '../../lib/proxy/client/index.js'
import { cliRunner, type Make } from '../helpers/cli-run.js'
import { until } from '../helpers/jobs.js'

let dir = ''

/** Starts the herd binary on port 0 everywhere; its ports come from its "herd started" log line. */
async function herdProcess(t: {
  teardown(fn: () => unknown): void
  match: (a: string, b: RegExp, m: string) => void
}): Promise<{ api: string; proxy: string }> {
  const config = join(dir, 'herd.yaml')
  await writeFile(
    config,
    [
      `dataDir: ${join(dir, 'herd')}`,
      'bindHost: 127.0.0.1',
      'basePort: 0',
      'log: { level: info }',
      'plugins:',
      '  onex:',
      '    resyncSeconds: 0.2',
      '',
    ].join('\n'),
  )
  const log = join(dir, 'herd.log')
  const fd = openSync(log, 'a')
  let child: ChildProcess
  try {
    child = spawn(process.execPath, [builtBinary('shoal'), 'herd', '--config', config], {
      stdio: ['ignore', fd, fd],
    })
  } finally {
    closeSync(fd)
  }
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  t.teardown(async () => {
    child.kill('SIGTERM')
    await exited
  })
  const started = await until(
    'herd started',
    async () => {
      const lines = (await readFile(log, 'utf8')).split('\n')
      const line = lines.find((l) => l.includes('"herd started"'))
      return line ? (JSON.parse(line) as { ports: { apiserver: number; proxy: number } }) : undefined
    },
    30_000,
  )
  const text = await readFile(log, 'utf8')
  t.match(text, /"plugin":"onex".*"plugin loaded"|"plugin loaded".*"plugin":"onex"/, 'the plugin is loaded')
  return { api: `127.0.0.1:${started.ports.apiserver}`, proxy: `http://127.0.0.1:${started.ports.proxy}` }
}

t.test('apply -f, get, scale, --watch, protection, delete', async (t) => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-onex-cli-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const herd = await herdProcess(t)
  const run = cliRunner(dir)
  const onex: Make = ((io: never, deps: never) => onexCommand(io, deps, 'shoal-onex')) as unknown as Make
  const cli = (...args: string[]) => run(onex, [...args, '--apiserver', herd.api])

  // An image to resolve, and two Hosts (agents do not report Hosts yet).
  const image = Buffer.from('image bytes\n')
  const proxy = new ProxyClient(herd.proxy)
  await proxy.pushBlob('default', Digest.fromBuffer(image), Readable.from([image]), image.length)
  await proxy.putTag('build-/onex/images-node.tar:v1', Digest.fromBuffer(image))
  const hosts = new ResourceClient<HostSpecT, HostStatusT>(`http://${herd.api}`, HostKind)
  for (const name of ['h1', 'h2']) {
    const h = await hosts.create(HOST_NAMESPACE, {
      metadata: { name },
      spec: { capacity: { cpuMillis: 8000, memoryMiB: 16384 }, unschedulable: false },
    })
    await hosts.updateStatus(HOST_NAMESPACE, {
      ...h,
      status: { heartbeatTime: new Date(Date.now() + 3600_000).toISOString() },
    })
  }

  const file = join(dir, 'chain.yaml')
  await writeFile(
    file,
    `apiVersion: apps.onex.io/v1beta1
kind: Chain
metadata:
  name: demo
spec:
  displayName: demo chain
  image: build-/onex/images-node.tar:v1
---
apiVersion: apps.onex.io/v1beta1
kind: MinerSet
metadata:
  name: web
  annotations:
    apps.onex.io/deletion-protection: "true"
spec:
  replicas: 1
  deletePolicy: Newest
  template:
    spec:
      chainName: demo
`,
  )
  const applied = await cli('apply', '-f', file)
  t.equal(applied.code, 0, applied.err)
  t.same(applied.outLines, ['chain.apps.onex.io/demo created', 'minerset.apps.onex.io/web created'])
  const again = await cli('apply', '-f', file)
  t.same(again.outLines, ['chain.apps.onex.io/demo unchanged', 'minerset.apps.onex.io/web unchanged'])

  await until('genesis digest', async () => {
    const r = await cli('get', 'chain', 'demo', '-o', 'json')
    return JSON.parse(r.out).status?.genesisDigest
  })
  const chains = await cli('get', 'chains')
  t.match(chains.outLines[0], /^NAME\s+MINERTYPE\s+IMAGE\s+GENESIS\s+READY\s+AGE$/)
  t.match(
    chains.outLines[1],
    /^demo\s+S1\.SMALL2\s+build-\/onex\/images-node\.tar:v1\s+[0-9a-f]{12}\s+True\s+\d+s$/,
  )

  const scaled = await cli('scale', 'minerset', 'web', '--replicas', '3')
  t.equal(scaled.code, 0, scaled.err)
  t.same(scaled.outLines, ['minerset.apps.onex.io/web scaled'])
  await until('3 Miners', async () => {
    const r = await cli('get', 'miners', '-l', 'apps.onex.io/minerset=web', '-o', 'yaml')
    return (parse(r.out) as { items: unknown[] }).items.length === 3
  })
  const ms = await cli('get', 'ms', 'web', '-o', 'yaml')
  t.equal((parse(ms.out) as { spec: { replicas: number } }).spec.replicas, 3)

  // --watch: the list, then a line per change (a Miner deleted by the scale-down below).
  const stop = new AbortController()
  const lines: string[] = []
  let watching!: () => void
  const ready = new Promise<void>((r) => (watching = r))
  const watched = runWatch(herd.api, ['get', 'miners', '-n', 'default', '--watch'], lines, stop.signal, () =>
    watching(),
  )
  await ready
  await cli('scale', 'minerset/web', '--replicas', '2')
  await until('a deletion seen by --watch', () =>
    lines.some((l) => /\sdeleted$/.test(l) || /\sDeleting\s/.test(l)),
  )
  stop.abort()
  await watched
  t.match(lines[0], /^NAME\s+CHAIN\s+TYPE\s+HOST\s+PHASE\s+AGE$/)

  const refused = await cli('delete', 'minerset', 'web')
  t.equal(refused.code, 8, 'deletion protection: 403, exit code 8')
  t.match(refused.err, /protected from deletion/)
  const miners = new ResourceClient(`http://${herd.api}`, MinerKind)
  const sets = new ResourceClient(`http://${herd.api}`, MinerSetKind)
  await sets.patch('default', 'web', {
    metadata: { annotations: { 'apps.onex.io/deletion-protection': null } },
  })
  const deleted = await cli('delete', 'ms', 'web')
  t.same(deleted.outLines, ['minerset.apps.onex.io/web deleted'])
  await until('cascade', async () => (await miners.list('default')).items.length === 0)
  const bad = await cli('get', 'pods')
  t.equal(bad.code, 2, 'an unknown type is a usage error')
})

async function runWatch(
  api: string,
  args: string[],
  lines: string[],
  signal: AbortSignal,
  onWatching: () => void,
): Promise<void> {
  const { runCli } = await import('../../lib/cli/common.js')
  const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(`err: ${l}`) }
  await runCli(
    onexCommand(io, { env: {}, defaultConfigFile: join(dir, 'none.yaml'), signal, onWatching }, 'shoal-onex'),
    ['node', 'cli', ...args, '--apiserver', api],
    io,
  )
}
