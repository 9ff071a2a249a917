/**
 * `shoal onex get|apply|scale|delete`: OneX's resources (docs/onex.md) on the herd's resource API,
 * in the style of kubectl. `get` prints a table or `-o json|yaml`, and with `--watch` a line per
 * change after the list; `apply -f` creates or updates every object of a YAML/JSON file (several
 * documents with `---`); `scale` writes a MinerSet's /scale subresource; `delete` answers whether
 * the object is gone or held by finalizers.
 */
import { readFile, stat } from 'node:fs/promises'
import { parseAllDocuments } from 'yaml'
import { ResourceClient } from '../apiserver/client/index.js'
import type { KindRef, Resource, ResourceInput } from '../apiserver/types.js'
import { isShoalError, toShoalError } from '../errors/index.js'
import { readTokenFile } from '../events/sinks.js'
import { HttpClient } from '../http/index.js'
import {
  CHAIN_NAMESPACE,
  ChainKind,
  HOST_NAMESPACE,
  HostKind,
  MinerKind,
  MinerSetKind,
  ONEX_API_VERSION,
} from '../onex/kinds.js'
import { Command } from './commander.js'
import { apiServerOptions, type Output, parseSeconds, stdio, usage } from './common.js'
import { formatObjects, type OutputFormat, table } from './onex-output.js'
import { type ClientDeps, startClient } from './output.js'

interface Kind {
  ref: KindRef
  /** Where objects of this kind live unless -n says otherwise. */
  namespace: string
}

const KINDS: Kind[] = [
  { ref: ChainKind, namespace: CHAIN_NAMESPACE },
  { ref: MinerSetKind, namespace: 'default' },
  { ref: MinerKind, namespace: 'default' },
  { ref: HostKind, namespace: HOST_NAMESPACE },
]
const ALIASES: Record<string, string> = { ch: 'chains', ms: 'minersets', mi: 'miners' }
const MAX_FILE_BYTES = 1 << 20

/** `chains`, `chain`, `Chain`, `ch`, `chain.apps.onex.io` → the kind. */
export function kindOf(word: string): Kind {
  const w = word.toLowerCase().replace(/\.apps\.onex\.io$/, '')
  const plural = ALIASES[w] ?? w
  const k = KINDS.find((x) => x.ref.plural === plural || x.ref.kind.toLowerCase() === plural)
  if (!k) throw usage(`unknown resource type "${word.slice(0, 80)}": chains, minersets (ms), miners, hosts`)
  return k
}

export interface OnexDeps extends ClientDeps {
  /** Ends `get --watch` (tests; the binary ends on a signal). */
  signal?: AbortSignal
  /** Called once `get --watch` has printed the list and watches (tests). */
  onWatching?: () => void
  now?: () => number
}

interface ApiFlags {
  apiserver?: string
  tokenFile?: string
  config?: string
  timeout: number
  namespace?: string
}

function apiOptions(cmd: Command): Command {
  return apiServerOptions(cmd, { tokenFile: true })
    .option(
      '-n, --namespace <ns>',
      'namespace (default: kube-system for chains and hosts, default for the rest)',
    )
    .option(
      '--timeout <seconds>',
      'fail after this many seconds without an answer (0 = none)',
      parseSeconds,
      30,
    )
    .option('--config <file>', 'client config file (default: $SHOAL_CONFIG, else /etc/shoal/client.yaml)')
}

async function connect(io: Output, f: ApiFlags, deps: OnexDeps) {
  const { settings } = startClient(io, { config: f.config }, deps)
  const tokenFile = f.tokenFile ?? settings.tokenFile
  const token = tokenFile
    ? await readTokenFile(tokenFile).catch((e) => Promise.reject(usage(toShoalError(e).message)))
    : undefined
  const base = f.apiserver ?? settings.apiserver
  const url = /^https?:\/\//.test(base) ? base : `http://${base}`
  const opts = { token, timeoutMs: f.timeout * 1000 }
  return {
    url,
    token,
    client: (k: Kind) => new ResourceClient(url, k.ref, opts),
    http: new HttpClient(url, { name: 'apiserver', timeoutMs: opts.timeoutMs }),
  }
}

const label = (k: Kind, name: string) => `${k.ref.kind.toLowerCase()}.${k.ref.group}/${name}`

export function onexCommand(io: Output = stdio, deps: OnexDeps = {}, name = 'onex'): Command {
  const cmd = new Command(name).description(
    "OneX's resources on the herd's resource API (Chains, MinerSets, Miners, Hosts), kubectl-style.",
  )
  const now = () => (deps.now ?? Date.now)()

  apiOptions(cmd.command('get'))
    .description('List objects of a kind, or one by name.')
    .argument('<type>', 'chains | minersets (ms) | miners | hosts')
    .argument('[name]', 'one object')
    .option('-A, --all-namespaces', 'every namespace')
    .option('-l, --selector <selector>', 'label selector, e.g. apps.onex.io/minerset=web')
    .option('-o, --output <format>', 'json | yaml (default: a table)', (v) => {
      if (v !== 'json' && v !== 'yaml') throw usage(`invalid -o ${v}: json or yaml`)
      return v
    })
    .option('-w, --watch', 'after the list, print a line (or an object) per change until interrupted')
    .action(
      async (
        type: string,
        objName: string | undefined,
        f: ApiFlags & { allNamespaces?: boolean; selector?: string; output?: OutputFormat; watch?: boolean },
      ) => {
        const k = kindOf(type)
        const api = await connect(io, f, deps)
        const client = api.client(k)
        const ns = f.allNamespaces ? undefined : (f.namespace ?? k.namespace)
        const format = f.output ?? 'table'
        const print = (items: Resource[], header: boolean, single: boolean) => {
          if (format === 'table')
            for (const l of table(k.ref.plural, items, now(), ns === undefined, header)) io.out(l)
          else io.out(formatObjects(items, format, single))
        }
        let rv: string
        if (objName !== undefined) {
          const obj = await client.get(ns ?? k.namespace, objName)
          print([obj], true, true)
          rv = obj.metadata.resourceVersion
        } else {
          const list = await client.list(ns, { labelSelector: f.selector })
          if (list.items.length === 0 && format === 'table')
            io.err(`No resources found${ns ? ` in ${ns} namespace` : ''}.`)
          else print(list.items, true, false)
          rv = list.metadata.resourceVersion
        }
        if (!f.watch) return
        deps.onWatching?.()
        for await (const ev of client.watch({
          namespace: ns,
          labelSelector: f.selector,
          fieldSelector: objName ? `metadata.name=${objName}` : undefined,
          resourceVersion: rv,
          signal: deps.signal,
          retryMs: 1000,
        })) {
          if (ev.type === 'BOOKMARK') continue
          if (ev.type === 'DELETED' && format === 'table') {
            io.out(`${ev.object.metadata.name}  deleted`)
            continue
          }
          print([ev.object], false, true)
        }
      },
    )

  apiOptions(cmd.command('apply'))
    .description('Create or update every object of a YAML or JSON file (documents separated by ---).')
    .requiredOption('-f, --filename <file>', 'the file')
    .action(async (f: ApiFlags & { filename: string }) => {
      const docs = await readObjects(f.filename)
      const api = await connect(io, f, deps)
      for (const doc of docs) {
        const k = kindOf(doc.kind ?? '')
        if (doc.apiVersion !== undefined && doc.apiVersion !== ONEX_API_VERSION)
          throw usage(
            `${f.filename}: apiVersion "${String(doc.apiVersion).slice(0, 80)}" is not ${ONEX_API_VERSION}`,
          )
        const ns = f.namespace ?? doc.metadata.namespace ?? k.namespace
        io.out(`${label(k, doc.metadata.name)} ${await applyOne(api.client(k), ns, doc)}`)
      }
    })

  apiOptions(cmd.command('scale'))
    .description("Set a MinerSet's replicas through its /scale subresource.")
    .argument('<type>', 'minerset (or minerset/NAME)')
    .argument('[name]', 'the MinerSet')
    .requiredOption('--replicas <n>', 'the new count', (v) => {
      if (!/^[0-9]{1,5}$/.test(v)) throw usage(`invalid --replicas ${v}: a whole number ≥ 0`)
      return Number(v)
    })
    .action(async (type: string, objName: string | undefined, f: ApiFlags & { replicas: number }) => {
      const [word, inline] = type.split('/', 2) as [string, string | undefined]
      const k = kindOf(word)
      const target = inline ?? objName
      if (k.ref.plural !== 'minersets' || !target)
        throw usage('scale takes a MinerSet: shoal onex scale minerset NAME --replicas N')
      const api = await connect(io, f, deps)
      const ns = f.namespace ?? k.namespace
      const path = `/apis/${k.ref.group}/${k.ref.version}/namespaces/${encodeURIComponent(ns)}/${k.ref.plural}/${encodeURIComponent(target)}/scale`
      await api.http.json('PUT', path, {
        body: JSON.stringify({ spec: { replicas: f.replicas } }),
        headers: {
          'content-type': 'application/json',
          ...(api.token ? { authorization: `Bearer ${api.token}` } : {}),
        },
      })
      io.out(`${label(k, target)} scaled`)
    })

  apiOptions(cmd.command('delete'))
    .description('Delete objects by name; finalizers may hold them until their controller lets go.')
    .argument('<type>', 'chains | minersets (ms) | miners | hosts')
    .argument('<names...>', 'the objects')
    .action(async (type: string, names: string[], f: ApiFlags) => {
      const k = kindOf(type)
      const api = await connect(io, f, deps)
      const client = api.client(k)
      const ns = f.namespace ?? k.namespace
      for (const n of names) {
        const obj = await client.delete(ns, n)
        const held =
          (obj.metadata.finalizers ?? []).length > 0 && obj.metadata.deletionTimestamp !== undefined
        io.out(
          `${label(k, n)} ${held ? `deleting (held by ${obj.metadata.finalizers.join(', ')})` : 'deleted'}`,
        )
      }
    })
  return cmd
}

type Doc = ResourceInput & { apiVersion?: string; kind?: string }

async function readObjects(file: string): Promise<Doc[]> {
  const cannot = (e: unknown) => Promise.reject(usage(`cannot read ${file}: ${toShoalError(e).message}`))
  // Refused before reading: a manifest is small, a wrong path may name a huge file.
  const st = await stat(file).catch(cannot)
  if (st.size > MAX_FILE_BYTES) throw usage(`${file} is larger than ${MAX_FILE_BYTES} bytes`)
  const text = await readFile(file, 'utf8').catch(cannot)
  const out: Doc[] = []
  for (const d of parseAllDocuments(text)) {
    if ('errors' in d && d.errors.length > 0) throw usage(`${file}: ${d.errors[0]?.message.split('\n')[0]}`)
    const v = d.toJSON() as Doc | null
    if (v === null) continue
    if (typeof v !== 'object' || typeof v.metadata?.name !== 'string' || typeof v.kind !== 'string')
      throw usage(`${file}: every document needs kind and metadata.name`)
    out.push(v)
  }
  if (out.length === 0) throw usage(`${file} holds no object`)
  return out
}

/** created | configured | unchanged. */
async function applyOne(client: ResourceClient, ns: string, doc: Doc): Promise<string> {
  const input = { ...doc, metadata: { ...doc.metadata, namespace: ns } }
  try {
    await client.create(ns, input)
    return 'created'
  } catch (err) {
    if (!isShoalError(err, 'ALREADY_EXISTS')) throw err
  }
  const cur = await client.get(ns, doc.metadata.name)
  const next = await client.update(ns, {
    ...cur,
    metadata: {
      ...cur.metadata,
      labels: doc.metadata.labels ?? cur.metadata.labels,
      annotations: doc.metadata.annotations ?? cur.metadata.annotations,
    },
    spec: doc.spec,
  })
  const same =
    next.metadata.generation === cur.metadata.generation &&
    JSON.stringify([next.metadata.labels, next.metadata.annotations]) ===
      JSON.stringify([cur.metadata.labels, cur.metadata.annotations])
  return same ? 'unchanged' : 'configured'
}
