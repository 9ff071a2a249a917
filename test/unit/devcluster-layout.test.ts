/**
 * The devcluster's layout with several origins and S3: ports as docs/architecture.md §3 gives
 * them, generated config files that wire one ring (every service names every origin), and port
 * choices that would collide refused before anything starts.
 */
import t from 'tap'
import { clusterLayout, originPorts } from '../../lib/devcluster/layout.js'

t.test('one origin, no S3, no jobs: the packaged config alone, as before', async (t) => {
  const l = clusterLayout('/w', 2, 15000, 16000, { jobs: false })
  t.same(l.configs, {})
  t.notOk(l.agents[0]?.args.includes('--config'))
  t.equal(l.s3, undefined)
  t.same(l.origins, [])
  t.notOk(l.herd.args.includes('--config'))
})

t.test('three origins over S3: ports, ring and backend in every config', async (t) => {
  const l = clusterLayout('/w', 1, 15000, 16000, { origins: 3, s3: true, configDir: '/pkg/config' })
  t.same(originPorts(2), { peer: 15011, http: 15012 })
  t.same(originPorts(3), { peer: 15021, http: 15022 })
  t.same(l.s3?.ports, { s3: 14000 })
  t.same(
    l.origins.map((o) => o.name),
    ['origin-2', 'origin-3'],
  )
  t.same(l.origins[0]?.args, ['origin', '--config', '/w/config/origin-2.yaml'])
  const nodes = ['127.0.0.1:15002', '127.0.0.1:15012', '127.0.0.1:15022']
  const herd = l.configs['/w/config/herd.yaml'] as Record<string, Record<string, unknown>>
  t.equal(herd.extends as unknown as string, '/pkg/config/herd/development.yaml')
  t.same(herd.origin?.hashring, { nodes, replicas: 3 })
  t.match(herd.origin?.backend, {
    type: 's3',
    bucket: 'shoal-devcluster',
    endpoint: 'http://127.0.0.1:14000',
  })
  t.same(herd.proxy?.origins, nodes)
  t.same(herd.buildIndex?.origins, nodes)
  t.same(
    ((herd.tracker?.origins ?? []) as { peer: string }[]).map((o) => o.peer),
    ['127.0.0.1:15001', '127.0.0.1:15011', '127.0.0.1:15021'],
  )
  const o3 = l.configs['/w/config/origin-3.yaml'] as Record<string, unknown>
  t.match(o3, {
    server: { port: 15022 },
    peer: { port: 15021 },
    self: '127.0.0.1:15022',
    trackerUrl: 'http://127.0.0.1:15003',
    buildIndex: '127.0.0.1:15004',
    hashring: { nodes, replicas: 3 },
    backend: { type: 's3' },
  })
})

t.test('without S3 the origins share the herd backend folder; replicas follow --replicas', async (t) => {
  const l = clusterLayout('/w', 0, 15000, 16000, { origins: 2, replicas: 1 })
  const o2 = l.configs['/w/config/origin-2.yaml'] as Record<string, unknown>
  t.same(o2.backend, { type: 'fs', root: '/w/herd/backend' })
  t.same((o2.hashring as { replicas: number }).replicas, 1)
  const herd = l.configs['/w/config/herd.yaml'] as Record<string, Record<string, unknown>>
  t.equal(herd.origin?.backend, undefined, "the herd's origin keeps its own folder backend")
})

t.test('bad choices are refused naming the clash', async (t) => {
  t.throws(() => clusterLayout('/w', 1, 15000, 16000, { origins: 2, replicas: 3 }), {
    code: 'USAGE',
    message: /--replicas must be between 1 and the number of origins \(2\)/,
  })
  t.throws(() => clusterLayout('/w', 1, 15000, 15020, { origins: 3 }), {
    code: 'USAGE',
    message: /agent-1's ports 15020-15022 overlap origin-3's 15021-15022/,
  })
  t.throws(() => clusterLayout('/w', 0, 500, 16000, { s3: true }), {
    code: 'USAGE',
    message: /--base-port must be above 1000/,
  })
  t.throws(() => clusterLayout('/w', 0, 65520, 16000, { origins: 3 }), {
    code: 'USAGE',
    message: /needs ports up to 65542/,
  })
  t.throws(() => clusterLayout('/w', 1, 15000, 13998, { s3: true }), {
    code: 'USAGE',
    message: /agent-1's ports 13998-14000 overlap the S3 server's 14000-14000/,
  })
})

t.test(
  "jobs (the default): each agent named agent-N, on the herd's resource API, with its own root",
  async (t) => {
    const l = clusterLayout('/w', 2, 17000, 18000, { configDir: '/pkg/config' })
    t.same(l.agents[1]?.args.slice(0, 3), ['agent', '--config', '/w/config/agent-2.yaml'])
    t.same(l.configs['/w/config/agent-2.yaml'], {
      extends: '/pkg/config/agent/development.yaml',
      hostName: 'agent-2',
      jobs: { apiserver: '127.0.0.1:17006', roots: ['/w/roots/agent-2'], proxy: '127.0.0.1:17000' },
    })
    t.notOk(l.herd.args.includes('--config'), 'the herd runs its resource API and job controller by default')
  },
)
