/**
 * Job plans: the examples parse, HOST:/path splits (IPv6 in brackets), generated names are
 * valid job names, and a Distribution spec refuses '..' and path-like names server-side too.
 */
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { DistributionSpec } from '../../lib/jobs/kinds.js'
import { generatedName, hostPath, JobName, parsePlan } from '../../lib/jobs/plan.js'

const examples = join(dirname(fileURLToPath(import.meta.url)), '../../examples/jobs')

t.test('the §6.3 examples parse', async (t) => {
  for (const file of ['trade-data.yaml', 'trade-data.json']) {
    const plan = parsePlan(await readFile(join(examples, file), 'utf8'), file)
    t.same(plan.spec.source, { host: '192.168.1.1', path: '/usr/local/data/xxx交易数据.txt' }, file)
    t.same(
      plan.spec.targets.map((x) => x.host),
      ['192.168.1.10', '192.168.1.11', '192.168.1.12'],
    )
    t.equal(plan.spec.options.timeoutSeconds, 600)
    t.equal(plan.namespace, 'default')
  }
})

t.test('HOST:/path', async (t) => {
  t.same(hostPath('192.168.1.1:/a/b:c', '--src'), { host: '192.168.1.1', path: '/a/b:c' })
  t.same(hostPath('[fd00::1]:/data', '--to'), { host: 'fd00::1', path: '/data' })
  t.throws(() => hostPath('/data', '--to'), { code: 'USAGE' })
  t.throws(() => hostPath('host:data', '--to'), { code: 'USAGE' })
})

t.test('generated names are job names', async (t) => {
  const n = generatedName(new Date('2026-12-06T01:02:03.456Z'))
  t.match(n, /^job-20261206-010203-[a-z0-9]{4}$/)
  t.ok(JobName.safeParse(n).success)
})

t.test('the spec refuses traversal', async (t) => {
  const spec = (target: Record<string, unknown>) =>
    DistributionSpec.safeParse({ source: { tag: 'h-/d-f:v1' }, targets: [target] }).success
  t.ok(spec({ host: 'h', path: '/data' }))
  t.notOk(spec({ host: 'h', path: '/data/../etc' }))
  t.notOk(spec({ host: 'h', path: '/data', name: '../x' }))
  t.notOk(spec({ host: 'h', path: '/data', name: 'a/b' }))
  t.notOk(spec({ host: 'h/x', path: '/data' }))
})
