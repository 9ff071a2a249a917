/**
 * The OneX node runner with real processes: the example image and a genesis supplied by digest,
 * the node started from its manifest (port 0, read from its port file), PodHealthy from its
 * /health, three Miners wired together through updateStaticNodes agreeing on the chain, restarts per restartPolicy after a kill, a hung node killed by the liveness check,
 * stop by SIGTERM (and SIGKILL after podDeletionTimeout for a node that ignores it), and images
 * that are refused before anything runs.
 */
import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import type { MinerAssignment, MinerNodeStatus } from '../../lib/onex/node/assignment.js'
import { NodeRunner } from '../../lib/onex/node/runner.js'
import {
  genesisDoc,
  getJson,
  HUNDRED_ETH,
  mapPullBlob,
  packExampleImage,
  sha256,
  tarOf,
  tempDir,
  until,
} from '../helpers/onex-node.js'

type Teardown = { teardown(fn: () => unknown): void }

/** A node that ignores SIGTERM (noting it got one) and answers /health unhealthy once told to. */
const STUBBORN = `
import { createServer } from 'node:http'
import { existsSync, writeFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
const [nodeId, portFile, dataDir] = process.argv.slice(2)
process.on('SIGTERM', () => writeFileSync(join(dataDir, 'got-sigterm'), 'yes'))
const server = createServer((req, res) => {
  const ok = !existsSync(join(dataDir, 'hang'))
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ ok, nodeId }))
})
server.listen(0, '127.0.0.1', () => {
  writeFileSync(portFile + '.tmp', JSON.stringify({ port: server.address().port, pid: process.pid }))
  renameSync(portFile + '.tmp', portFile)
})
`

function stubbornImage(): Buffer {
  const manifest = {
    schemaVersion: 1,
    name: 'stubborn',
    command: ['{node}', 'stub.mjs'],
    args: ['{nodeId}', '{portFile}', '{dataDir}'],
  }
  return tarOf([
    { name: 'manifest.json', data: JSON.stringify(manifest) },
    { name: 'stub.mjs', data: STUBBORN },
  ])
}

interface Rig {
  dir: string
  blobs: Map<string, Buffer>
  imageDigest: string
  genesisDigest: string
  addresses: string[]
}

async function rig(t: Teardown, image?: Buffer): Promise<Rig> {
  const dir = await tempDir(t)
  const blobs = new Map<string, Buffer>()
  const bytes = image ?? (await packExampleImage(join(dir, 'image.tar'))).bytes
  const imageDigest = sha256(bytes)
  blobs.set(imageDigest, bytes)
  const { doc, addresses } = genesisDoc(10)
  const genesis = Buffer.from(JSON.stringify(doc))
  const genesisDigest = sha256(genesis)
  blobs.set(genesisDigest, genesis)
  return { dir, blobs, imageDigest, genesisDigest, addresses }
}

function runner(
  t: Teardown,
  r: Rig,
  assignment: Partial<MinerAssignment> = {},
  extra: { config?: Record<string, unknown>; served?: Buffer } = {},
): { runner: NodeRunner; reports: MinerNodeStatus[] } {
  const reports: MinerNodeStatus[] = []
  const runner = new NodeRunner(
    {
      name: 'm1',
      chainName: 'c1',
      imageDigest: r.imageDigest,
      genesisDigest: r.genesisDigest,
      staticNodes: ['enode://m1@127.0.0.1:0'],
      mineIntervalMs: 100,
      ...assignment,
    },
    {
      config: {
        workDir: join(r.dir, 'work'),
        healthIntervalMs: 100,
        livenessFailures: 3,
        backoff: { initialMs: 50, maxMs: 400 },
        ...extra.config,
      },
      pullBlob: mapPullBlob(r.blobs, extra.served),
      report: (s) => reports.push(s),
    },
  )
  t.teardown(() => runner.stop())
  return { runner, reports }
}

const healthy = (s: MinerNodeStatus) => s.conditions.find((c) => c.type === 'PodHealthy')?.status === 'True'
const httpAddress = (s: MinerNodeStatus) => s.addresses.find((a) => a.type === 'HTTP')?.address

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('runs the example image: Running, addresses, PodHealthy, balances; stop ends it', async (t) => {
  const r = await rig(t)
  const { runner: m, reports } = runner(t, r)
  await m.start()
  const url = httpAddress(m.status) as string
  t.match(m.status, {
    phase: 'Running',
    podRef: { kind: 'Process' },
    artifacts: { imageDigest: r.imageDigest, genesisDigest: r.genesisDigest },
  })
  t.match(m.status.addresses, [
    { type: 'InternalIP', address: '127.0.0.1' },
    { type: 'HTTP' },
    { type: 'Enode' },
  ])
  t.match(m.status.addresses[2]?.address, /^enode:\/\/m1@127\.0\.0\.1:[1-9][0-9]*$/)
  await until('PodHealthy True', () => healthy(m.status))
  t.equal((await getJson(`${url}/balances/${r.addresses[3]}`)).body.balance, HUNDRED_ETH)
  t.ok(
    reports.some((s) => s.phase === 'Provisioning'),
    'Provisioning was reported',
  )

  const pid = m.status.podRef?.pid as number
  await m.stop()
  t.notOk(alive(pid), 'the process is gone once stop() resolves')
  t.match(m.status, {
    phase: 'Deleting',
    conditions: [{ type: 'PodHealthy', status: 'False', reason: 'Stopped' }],
  })
  t.notOk(m.status.podRef, 'no podRef after stop')
})

t.test('three Miners on one image: peers wired with updateStaticNodes, the same block hashes', async (t) => {
  const r = await rig(t)
  const names = ['m1', 'm2', 'm3']
  const initial = names.map((n) => `enode://${n}@127.0.0.1:0`)
  const miners = names.map((name) => runner(t, r, { name, staticNodes: initial }).runner)
  for (const m of miners) await m.start()
  // The ports are the kernel's: the whitelist gets them from the reported Enode addresses.
  const enodes = miners.map((m) => m.status.addresses.find((a) => a.type === 'Enode')?.address as string)
  t.match(enodes, [/^enode:\/\/m1@/, /^enode:\/\/m2@/, /^enode:\/\/m3@/])
  for (const m of miners) await m.updateStaticNodes(enodes)
  const urls = miners.map((m) => httpAddress(m.status) as string)
  await until('all three at height 5', async () => {
    for (const url of urls)
      if ((await getJson<{ number: number }>(`${url}/blocks/latest`)).body.number < 5) return false
    return true
  })
  for (let n = 1; n <= 5; n++) {
    const blocks = await Promise.all(
      urls.map(async (u) => (await getJson<{ hash: string }>(`${u}/blocks/${n}`)).body),
    )
    t.equal(new Set(blocks.map((b) => b.hash)).size, 1, `block ${n}: one hash`)
  }
  await t.rejects(
    (miners[0] as NodeRunner).updateStaticNodes(['enode://m1@127.0.0.1:0', 'http://not-an-enode']),
    { code: 'CONFIG_INVALID' },
    'a list with something that is not an enode URL is refused',
  )
})

t.test(
  'restartPolicy Always: a killed node is seen unhealthy and restarted, keeping its chain',
  async (t) => {
    const r = await rig(t)
    const { runner: m, reports } = runner(t, r, { restartPolicy: 'Always' })
    await m.start()
    await until('PodHealthy True', () => healthy(m.status))
    const url1 = httpAddress(m.status) as string
    await until(
      'a few blocks',
      async () => (await getJson<{ number: number }>(`${url1}/blocks/latest`)).body.number >= 3,
    )
    const before = (await getJson<{ number: number; hash: string }>(`${url1}/blocks/3`)).body
    const pid1 = m.status.podRef?.pid as number
    const seen = reports.length
    process.kill(pid1, 'SIGKILL')

    const after = await until('a new process, healthy', () =>
      m.status.podRef && m.status.podRef.pid !== pid1 && healthy(m.status) ? m.status : undefined,
    )
    const between = reports.slice(seen)
    t.ok(
      between.some((s) =>
        s.conditions.some(
          (c) => c.type === 'PodHealthy' && c.status === 'False' && c.reason === 'ProcessExited',
        ),
      ),
      'PodHealthy False (ProcessExited) was reported in between',
    )
    t.equal(after.restartCount, 1)
    t.equal(after.phase, 'Running')
    const url2 = httpAddress(after) as string
    t.same(
      (await getJson(`${url2}/blocks/3`)).body,
      before,
      'the restarted node kept its chain (data folder)',
    )
  },
)

t.test('restartPolicy OnFailure: SIGKILL restarts, a clean exit (code 0) does not', async (t) => {
  const r = await rig(t)
  const { runner: m } = runner(t, r, { restartPolicy: 'OnFailure' })
  await m.start()
  const pid1 = m.status.podRef?.pid as number
  process.kill(pid1, 'SIGKILL')
  await until('restarted', () => (m.status.podRef && m.status.podRef.pid !== pid1 ? true : undefined))
  const pid2 = m.status.podRef?.pid as number
  process.kill(pid2, 'SIGTERM') // the example node exits 0 on SIGTERM
  const failed = await until('Failed', () => (m.status.phase === 'Failed' ? m.status : undefined))
  t.match(failed, { failureReason: 'ProcessExited', failureMessage: /code 0/, restartCount: 1 })
  t.notOk(failed.podRef)
})

t.test('restartPolicy Never: a killed node stays down, phase Failed', async (t) => {
  const r = await rig(t)
  const { runner: m } = runner(t, r, { restartPolicy: 'Never' })
  await m.start()
  process.kill(m.status.podRef?.pid as number, 'SIGKILL')
  const failed = await until('Failed', () => (m.status.phase === 'Failed' ? m.status : undefined))
  t.match(failed, { failureReason: 'ProcessExited', failureMessage: /SIGKILL/, restartCount: 0 })
  t.match(failed.conditions, [{ type: 'PodHealthy', status: 'False', reason: 'ProcessExited' }])
})

t.test(
  'a node that ignores SIGTERM is killed after podDeletionTimeout; a hung one by liveness',
  async (t) => {
    const r = await rig(t, stubbornImage())
    const { runner: m } = runner(t, r, { podDeletionTimeoutSeconds: 1, restartPolicy: 'Always' })
    await m.start()
    await until('PodHealthy True', () => healthy(m.status))
    const dataDir = join(r.dir, 'work/miners/m1/data')

    // Hung: /health says not ok; after livenessFailures checks the process is killed and restarted.
    const pid1 = m.status.podRef?.pid as number
    await writeFile(join(dataDir, 'hang'), '')
    await until('killed by the liveness check', () => !alive(pid1))
    await rm(join(dataDir, 'hang'))
    await until('restarted and healthy', () =>
      m.status.podRef?.pid !== pid1 && healthy(m.status) ? true : undefined,
    )

    const pid2 = m.status.podRef?.pid as number
    await m.stop()
    t.equal(await readFile(join(dataDir, 'got-sigterm'), 'utf8'), 'yes', 'SIGTERM was sent first')
    t.notOk(alive(pid2), 'then SIGKILL: the process is gone when stop() resolves')
  },
)

t.test('refused before anything runs: a digest mismatch, a hostile image, a bad manifest', async (t) => {
  const r = await rig(t)
  const tampered = Buffer.from(r.blobs.get(r.imageDigest) as Buffer)
  tampered[600] = (tampered[600] as number) ^ 1
  const { runner: a } = runner(t, r, {}, { served: tampered })
  await t.rejects(a.start(), { code: 'DIGEST_MISMATCH', message: /hashes to sha256:/ })
  t.match(a.status, { phase: 'Failed', failureReason: 'DIGEST_MISMATCH' })
  t.notOk(a.status.podRef)

  const cases: [string, Buffer, RegExp][] = [
    ['escapes with ..', tarOf([{ name: '../../escaped', data: 'x' }]), /path with \.\./],
    ['has no manifest', tarOf([{ name: 'node.mjs', data: '' }]), /no manifest\.json/],
    [
      'names an unknown placeholder',
      tarOf([
        {
          name: 'manifest.json',
          data: JSON.stringify({
            schemaVersion: 1,
            name: 'x',
            command: ['{node}', 'x.mjs'],
            args: ['{secret}'],
          }),
        },
      ]),
      /unknown placeholder \{secret\}/,
    ],
    [
      'runs a program outside the image',
      tarOf([
        {
          name: 'manifest.json',
          data: JSON.stringify({ schemaVersion: 1, name: 'x', command: ['../../../bin/sh'] }),
        },
      ]),
      /neither \{node\} nor a file inside/,
    ],
  ]
  for (const [what, bytes, message] of cases) {
    const bad = await rig(t, bytes)
    const { runner: m } = runner(t, bad)
    await t.rejects(m.start(), { code: 'BAD_IMAGE', message }, `an image that ${what}`)
    t.match(m.status, { phase: 'Failed', failureReason: 'BAD_IMAGE' })
    await t.rejects(stat(join(bad.dir, 'escaped')), { code: 'ENOENT' }, 'nothing escaped')
  }
})
