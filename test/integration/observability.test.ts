/**
 * examples/observability (the Grafana dashboard and the Prometheus rules) against the metrics
 * the daemons really export: a herd and an agent move a file, then every service's /metrics is
 * scraped. Every metric an expression names must be exported, every label it matches or groups
 * by must be one of that metric's labels (or one Prometheus adds: job, instance), and every
 * label value it matches must be one the code uses.
 */
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { pull } from '../../lib/cli/pull.js'
import { tempDir } from '../helpers/files.js'
import { until } from '../helpers/origin-procs.js'
import { deadAddress, pushBytes, startHerdAndAgent } from '../helpers/pull-cluster.js'

const SCRAPE_LABELS = new Set(['job', 'instance'])
const PROMETHEUS_OWN = new Set(['up'])

/** metric family → label names seen on its samples (histogram suffixes folded into the family). */
async function scrape(urls: string[]): Promise<Map<string, Set<string>>> {
  const families = new Map<string, Set<string>>()
  for (const url of urls) {
    const text = await (await fetch(`${url.startsWith('http') ? url : `http://${url}`}/metrics`)).text()
    for (const line of text.split('\n')) {
      const type = /^# TYPE (\S+) /.exec(line)
      if (type?.[1] && !families.has(type[1])) families.set(type[1], new Set())
      const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? /.exec(line)
      if (!sample?.[1]) continue
      const family = sample[1].replace(/_(bucket|sum|count)$/, '')
      const labels = families.get(family) ?? families.get(sample[1]) ?? new Set<string>()
      for (const m of (sample[2] ?? '').matchAll(/(\w+)="/g)) if (m[1] !== 'le') labels.add(m[1] as string)
      families.set(families.has(family) ? family : sample[1], labels)
    }
  }
  return families
}

/** Every PromQL expression of the dashboard and the rules, with where it is. */
async function expressions(): Promise<{ where: string; expr: string }[]> {
  const dir = 'examples/observability'
  const dashboard = JSON.parse(await readFile(join(dir, 'grafana-dashboard.json'), 'utf8'))
  const out: { where: string; expr: string }[] = []
  for (const panel of dashboard.panels) {
    for (const target of panel.targets ?? []) out.push({ where: `panel "${panel.title}"`, expr: target.expr })
  }
  const rules = parse(await readFile(join(dir, 'prometheus-rules.yaml'), 'utf8'))
  for (const group of rules.groups) {
    for (const rule of group.rules) out.push({ where: `alert ${rule.alert}`, expr: rule.expr })
  }
  return out
}

t.test('every metric, label and value the dashboard and alerts use is exported', async (t) => {
  const dir = await tempDir(t, 'shoal-observability-')
  // A remote cluster that is down: the push's tag is queued for it and its attempts fail, so the
  // replication metrics carry their labels.
  const down = await deadAddress()
  const remotes = [{ name: 'dc2', buildIndex: down, origins: [down], tags: ['.'] }]
  const { herd, agent } = await startHerdAndAgent(t, dir, {
    buildIndex: { remotes, replication: { maxBackoffMs: 1000 } },
  })
  const { tag } = await pushBytes(herd, dir, 'prices.csv', Buffer.alloc(3 * 1024 * 1024, 7))
  await pull({ tag, dstPath: join(dir, 'out'), dstHost: agent.url })
  await until(
    'a replication attempt to the remote that is down failed',
    async () =>
      (await scrape([herd.urls.buildIndex]))
        .get('shoal_build_index_replication_attempts_total')
        ?.has('result') ?? false,
  )
  const families = await scrape([
    herd.urls.proxy,
    herd.urls.origin,
    herd.urls.tracker,
    herd.urls.buildIndex,
    agent.url,
  ])
  const source = await libStrings()

  const exprs = await expressions()
  t.ok(exprs.length >= 30, `${exprs.length} expressions`)
  for (const { where, expr } of exprs) {
    t.equal(balanced(expr), true, `${where}: brackets balance`)
    const names = [...expr.matchAll(/\b([a-z_:][a-z0-9_:]*)\s*(\{[^}]*\})?\s*(?=[[)\s]|$|\{)/g)]
      .map((m) => m[1] as string)
      .filter((n) => n.startsWith('shoal_') || PROMETHEUS_OWN.has(n))
    t.ok(names.length > 0, `${where}: names a metric`)
    const labelsOf = new Set<string>(SCRAPE_LABELS)
    for (const name of names) {
      if (PROMETHEUS_OWN.has(name)) continue
      const family = families.get(name)
      t.ok(family, `${where}: ${name} is exported`)
      for (const l of family ?? []) labelsOf.add(l)
    }
    for (const m of expr.matchAll(/(shoal_\w+)\{([^}]*)\}/g)) {
      for (const matcher of (m[2] as string).matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)) {
        const [, label, op, value] = matcher as unknown as [string, string, string, string]
        const own = families.get(m[1] as string)
        t.ok(SCRAPE_LABELS.has(label) || own?.has(label), `${where}: ${m[1]} has label "${label}"`)
        if (!SCRAPE_LABELS.has(label) && (op === '=' || op === '!=')) {
          t.ok(source.has(value), `${where}: the code sets ${label}="${value}"`)
        }
      }
    }
    for (const m of expr.matchAll(/\b(?:by|on)\s*\(([^)]*)\)/g)) {
      for (const label of (m[1] as string)
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)) {
        t.ok(labelsOf.has(label), `${where}: grouping label "${label}" exists`)
      }
    }
  }
})

/** String literals of lib/ (label values the code sets). */
async function libStrings(): Promise<Set<string>> {
  const out = await new Promise<string>((res, rej) =>
    execFile('grep', ['-rhoE', "'[a-z_]+'", 'lib'], { maxBuffer: 64 * 1024 * 1024 }, (e, stdout) =>
      e ? rej(e) : res(stdout),
    ),
  )
  return new Set(out.split('\n').map((s) => s.slice(1, -1)))
}

function balanced(expr: string): boolean {
  const stack: string[] = []
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' }
  for (const ch of expr.replace(/"[^"]*"/g, '""')) {
    if ('([{'.includes(ch)) stack.push(ch)
    else if (ch in pairs && stack.pop() !== pairs[ch]) return false
  }
  return stack.length === 0
}
