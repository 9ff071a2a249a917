/**
 * `shoal onex` refuses what it cannot use before it asks the API: unknown types, files that are
 * not manifests (bad YAML, no kind or name, another apiVersion, too large), bad --replicas.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { table } from '../../lib/cli/onex-output.js'
import { onexCommand } from '../../lib/cli/onex-program.js'
import { cliRunner, type Make } from '../helpers/cli-run.js'

const dir = await mkdtemp(join(tmpdir(), 'shoal-onex-cli-unit-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
const run = cliRunner(dir)
const onex = ((io: never, deps: never) => onexCommand(io, deps, 'shoal-onex')) as unknown as Make
// Port 9 (discard) on loopback: nothing here may reach it; a test that did would fail to connect.
const cli = (...args: string[]) => run(onex, [...args, '--apiserver', '127.0.0.1:9', '--timeout', '2'])

t.test('files that are not manifests are usage errors', async (t) => {
  const cases: [string, string | Buffer, RegExp][] = [
    ['bad.yaml', 'kind: [unclosed', /bad\.yaml/],
    ['nokind.yaml', 'metadata: { name: x }\n', /needs kind and metadata\.name/],
    ['noname.yaml', 'kind: Chain\nmetadata: {}\n', /needs kind and metadata\.name/],
    ['scalar.yaml', '42\n', /needs kind and metadata\.name/],
    ['empty.yaml', '---\n', /holds no object/],
    ['pods.yaml', 'kind: Pod\nmetadata: { name: x }\n', /unknown resource type "Pod"/],
    [
      'version.yaml',
      'apiVersion: v1\nkind: Chain\nmetadata: { name: x }\n',
      /apiVersion "v1" is not apps\.onex\.io\/v1beta1/,
    ],
    ['big.yaml', Buffer.alloc((1 << 20) + 1, 0x20), /larger than/],
  ]
  for (const [name, content, message] of cases) {
    await writeFile(join(dir, name), content)
    const r = await cli('apply', '-f', join(dir, name))
    t.equal(r.code, 2, `${name}: exit 2`)
    t.match(r.err, message, name)
  }
  const missing = await cli('apply', '-f', join(dir, 'nope.yaml'))
  t.equal(missing.code, 2)
  t.match(missing.err, /cannot read/)
})

t.test('bad types and counts', async (t) => {
  t.equal((await cli('get', 'pods')).code, 2)
  t.equal((await cli('scale', 'miners', 'x', '--replicas', '2')).code, 2, 'only MinerSets scale')
  t.equal((await cli('scale', 'ms', 'x', '--replicas', '-1')).code, 2)
  t.equal((await cli('get', 'ms', '-o', 'xml')).code, 2)
})

t.test('tables align their columns', async (t) => {
  const now = Date.parse('2026-12-06T12:00:00Z')
  const host = (name: string, cpu: number) => ({
    apiVersion: 'apps.onex.io/v1beta1',
    kind: 'Host',
    metadata: { name, namespace: 'kube-system', creationTimestamp: '2026-12-06T11:00:00Z' },
    spec: { capacity: { cpuMillis: cpu, memoryMiB: 1024 } },
    status: { heartbeatTime: '2026-12-06T11:59:50Z' },
  })
  const lines = table('hosts', [host('a', 500), host('longer-name', 16000)] as never, now)
  t.same(lines, [
    'NAME         CPU(m)  MEMORY(MiB)  HEARTBEAT  AGE',
    'a            500     1024         10s ago    60m',
    'longer-name  16000   1024         10s ago    60m',
  ])
})
