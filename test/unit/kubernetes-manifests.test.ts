/**
 * examples/kubernetes, rendered as kustomize would (test/helpers/kustomize.ts) for the base and
 * every overlay, and checked for the mistakes that only show once applied: a selector that
 * matches no pod, a Service port or probe naming a port the container does not have, a config
 * file the daemon would refuse, a config address naming a Service or port that does not exist,
 * a config port that differs from the container's, a Secret or ConfigMap (or key) that is not
 * there, a container that may run as root.
 */
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { parse } from 'yaml'
import { AgentConfigSchema } from '../../lib/agent/config.js'
import { BuildIndexConfigSchema } from '../../lib/build-index/config.js'
import { validateConfig, type ZodType } from '../../lib/config/index.js'
import { OriginConfigSchema } from '../../lib/origin/config.js'
import { ProxyConfigSchema } from '../../lib/proxy/config.js'
import { TrackerConfigSchema } from '../../lib/tracker/config.js'
import { build, type K8sObject, strategicMerge } from '../helpers/kustomize.js'

const ROOT = 'examples/kubernetes'
const SCHEMAS: Record<string, ZodType<unknown>> = {
  'shoal-origin.js': OriginConfigSchema,
  'shoal-tracker.js': TrackerConfigSchema,
  'shoal-build-index.js': BuildIndexConfigSchema,
  'shoal-proxy.js': ProxyConfigSchema,
  'shoal-agent.js': AgentConfigSchema,
}
const WORKLOADS = new Set(['Deployment', 'StatefulSet', 'DaemonSet'])
const CLUSTER_SUFFIX = '.svc.cluster.local'

// biome-ignore lint/suspicious/noExplicitAny: manifest fragments
type Any = any

const renders = ['base', ...readdirSync(join(ROOT, 'overlays')).map((o) => `overlays/${o}`)]

t.test('the strategic merge used for overlays merges named lists by name', async (t) => {
  const merged = strategicMerge(
    { spec: { replicas: 3, containers: [{ name: 'a', image: 'x' }, { name: 'b' }] } },
    { spec: { replicas: 1, containers: [{ name: 'b', image: 'y' }] } },
  )
  t.same(merged, {
    spec: {
      replicas: 1,
      containers: [
        { name: 'a', image: 'x' },
        { name: 'b', image: 'y' },
      ],
    },
  })
})

for (const render of renders) {
  t.test(`${render}: renders and holds together`, async (t) => {
    const objects = build(join(ROOT, render))
    const byKind = (kind: string) => objects.filter((o) => o.kind === kind)
    const find = (kind: string, name: string) =>
      objects.find((o) => o.kind === kind && o.metadata.name === name)
    const workloads = objects.filter((o) => WORKLOADS.has(o.kind))
    t.ok(workloads.length >= 6, 'redis, origin, tracker, build-index, proxy and agent workloads')

    for (const w of workloads) {
      const labels = w.spec.template.metadata.labels ?? {}
      for (const [k, v] of Object.entries(w.spec.selector.matchLabels ?? {})) {
        t.equal(labels[k], v, `${w.kind} ${w.metadata.name}: selector ${k} matches its pods`)
      }
      checkPod(t, w, find)
    }

    for (const svc of byKind('Service')) {
      const pods = workloads.filter((w) => matches(svc.spec.selector, w.spec.template.metadata.labels))
      t.equal(pods.length, 1, `Service ${svc.metadata.name} selects one workload's pods`)
      const ports = pods[0] ? containerPorts(pods[0]) : []
      for (const p of svc.spec.ports) {
        const target = p.targetPort ?? p.port
        t.ok(
          ports.some((c) => c.name === target || c.containerPort === target),
          `Service ${svc.metadata.name} port ${p.name}: target ${target} is a container port`,
        )
      }
    }

    for (const sm of byKind('ServiceMonitor')) {
      const values: string[] = sm.spec.selector.matchExpressions[0].values
      for (const name of values) {
        const svc = find('Service', name)
        t.ok(svc, `ServiceMonitor selects Service ${name}, which exists`)
        for (const ep of sm.spec.endpoints) {
          t.ok(
            svc?.spec.ports.some((p: Any) => p.name === ep.port),
            `Service ${name} has port "${ep.port}"`,
          )
        }
        t.ok(
          matches({ 'app.kubernetes.io/name': name }, svc?.metadata.labels),
          `Service ${name} carries the label`,
        )
      }
    }

    // Every daemon's config file: valid for its schema, ports as the container declares, every
    // address a Service (or a StatefulSet pod) that exists with that port, every secret file mounted.
    const daemons = workloads.flatMap((w) => containers(w).map((c: Any) => ({ w, c })))
    let configs = 0
    for (const { w, c } of daemons) {
      const bin = (c.command ?? [])
        .find((a: string) => a in SCHEMAS || a.endsWith('.js'))
        ?.split('/')
        .pop()
      if (!bin) continue
      const schema = SCHEMAS[bin]
      t.ok(schema, `${w.metadata.name}: ${bin} is a daemon with a config schema`)
      const file = c.command[c.command.indexOf('--config') + 1]
      const text = mountedFile(w, c, file, find)
      t.type(text, 'string', `${w.metadata.name}: ${file} is in a mounted ConfigMap`)
      if (typeof text !== 'string' || !schema) continue
      configs++
      const config = validateConfig(schema, parse(text), `${render} ${file}`) as Any
      const ports = containerPorts(w)
      const port = (name: string) => ports.find((p) => p.name === name)?.containerPort
      if (w.spec.template.spec.hostNetwork) {
        t.equal(port('peer'), config.peer.port, `${w.metadata.name}: peer port as configured`)
        t.ok(
          JSON.stringify(c.readinessProbe).includes(`127.0.0.1:${config.server.port}/`),
          'probe dials the API port',
        )
      } else {
        t.equal(port('http'), config.server.port, `${w.metadata.name}: http port as configured`)
        if (config.peer)
          t.equal(port('peer'), config.peer.port, `${w.metadata.name}: peer port as configured`)
      }
      for (const address of addresses(config)) {
        t.ok(resolves(address, objects), `${w.metadata.name}: ${address.host}:${address.port} is served`)
      }
      for (const path of strings(config).filter((s) => s.startsWith('/run/secrets/'))) {
        t.ok(
          secretFileMounted(w, c, path, find),
          `${w.metadata.name}: ${path} comes from a mounted Secret key`,
        )
      }
    }
    t.equal(configs, 5, 'five daemons with checked config files')
  })
}

function checkPod(t: Test, w: K8sObject, find: Finder) {
  const spec = w.spec.template.spec
  t.equal(spec.securityContext?.runAsNonRoot, true, `${w.metadata.name}: pods run as non-root`)
  for (const c of spec.containers) {
    t.equal(
      c.securityContext?.allowPrivilegeEscalation,
      false,
      `${w.metadata.name}/${c.name}: no privilege escalation`,
    )
    t.not(c.securityContext?.runAsNonRoot, false, `${w.metadata.name}/${c.name}: not root`)
    const names = new Set((c.ports ?? []).map((p: Any) => p.name))
    for (const probe of [c.readinessProbe, c.livenessProbe]) {
      t.ok(probe, `${w.metadata.name}/${c.name}: has readiness and liveness probes`)
      const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port
      if (port !== undefined)
        t.ok(names.has(port), `${w.metadata.name}/${c.name}: probe port "${port}" exists`)
      if (probe?.httpGet)
        t.match(probe.httpGet.path, /^\/(health|readiness)$/, 'probes /health or /readiness')
    }
    for (const m of c.volumeMounts ?? []) {
      const inTemplates = (w.spec.volumeClaimTemplates ?? []).some((v: Any) => v.metadata.name === m.name)
      t.ok(
        inTemplates || spec.volumes?.some((v: Any) => v.name === m.name),
        `${w.metadata.name}: volume ${m.name}`,
      )
    }
  }
  for (const v of spec.volumes ?? []) {
    if (v.configMap) {
      const cm = find('ConfigMap', v.configMap.name)
      t.ok(cm, `${w.metadata.name}: ConfigMap ${v.configMap.name} exists`)
      for (const item of v.configMap.items ?? [])
        t.ok(item.key in (cm?.data ?? {}), `ConfigMap key ${item.key}`)
    }
    if (v.secret)
      t.ok(find('Secret', v.secret.secretName), `${w.metadata.name}: Secret ${v.secret.secretName} exists`)
  }
}

type Finder = (kind: string, name: string) => K8sObject | undefined

function matches(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) {
  return !!selector && Object.entries(selector).every(([k, v]) => labels?.[k] === v)
}

function containers(w: K8sObject): Any[] {
  return w.spec.template.spec.containers
}

function containerPorts(w: K8sObject): { name?: string; containerPort: number }[] {
  return containers(w).flatMap((c) => c.ports ?? [])
}

/** The text of `file` as mounted into container `c` from a ConfigMap volume. */
function mountedFile(w: K8sObject, c: Any, file: string, find: Finder): string | undefined {
  const mount = c.volumeMounts?.find((m: Any) => file.startsWith(`${m.mountPath}/`))
  const volume = w.spec.template.spec.volumes?.find((v: Any) => v.name === mount?.name)
  if (!volume?.configMap) return undefined
  const rel = file.slice(mount.mountPath.length + 1)
  const key = volume.configMap.items ? volume.configMap.items.find((i: Any) => i.path === rel)?.key : rel
  return find('ConfigMap', volume.configMap.name)?.data?.[key]
}

function secretFileMounted(w: K8sObject, c: Any, path: string, find: Finder): boolean {
  const mount = c.volumeMounts?.find((m: Any) => path.startsWith(`${m.mountPath}/`))
  const volume = w.spec.template.spec.volumes?.find((v: Any) => v.name === mount?.name)
  const secret = volume?.secret && find('Secret', volume.secret.secretName)
  return !!secret && path.slice(mount.mountPath.length + 1) in { ...secret.data, ...secret.stringData }
}

function strings(v: unknown): string[] {
  if (typeof v === 'string') return [v]
  if (Array.isArray(v)) return v.flatMap(strings)
  if (v && typeof v === 'object') return Object.values(v).flatMap(strings)
  return []
}

/** In-cluster addresses in a config: host:port strings, URLs, and hashring.dns. */
function addresses(config: Any): { host: string; port: number }[] {
  const out: { host: string; port: number }[] = []
  for (const s of strings(config)) {
    const m = /^(?:[a-z]+:\/\/)?([a-z0-9.-]+\.svc\.cluster\.local):(\d+)/.exec(s)
    if (m) out.push({ host: m[1] as string, port: Number(m[2]) })
    else if (s.includes(CLUSTER_SUFFIX)) out.push({ host: s, port: config.hashring?.dns?.port })
  }
  return out
}

/** A Service `svc.ns.svc.cluster.local` with that port, or a StatefulSet pod `pod.svc.ns...`. */
function resolves({ host, port }: { host: string; port: number }, objects: K8sObject[]): boolean {
  const labels = host.slice(0, -CLUSTER_SUFFIX.length).split('.')
  const [ns, svcName] = [labels.at(-1), labels.at(-2)]
  const svc = objects.find(
    (o) => o.kind === 'Service' && o.metadata.name === svcName && o.metadata.namespace === ns,
  )
  if (!svc?.spec.ports.some((p: Any) => p.port === port)) return false
  if (labels.length === 2) return true
  const pod = labels[0] as string
  const set = objects.find((o) => o.kind === 'StatefulSet' && o.spec.serviceName === svcName)
  const ordinal = Number(pod.slice(`${set?.metadata.name}-`.length))
  return !!set && pod.startsWith(`${set.metadata.name}-`) && ordinal >= 0 && ordinal < set.spec.replicas
}
