/**
 * `shoal events`: the event log (docs/events.md) from the herd's resource API, oldest first, one
 * line per event (or one JSON object per line with --json); --follow then prints new events as
 * they are recorded, and keeps following across a herd restart (the watch resumes from its last
 * resourceVersion, or lists again; events already printed are not printed twice).
 */
import { ResourceClient } from '../apiserver/client/index.js'
import { toShoalError } from '../errors/index.js'
import { EVENTS_NAMESPACE, EventKind, type EventResource, type EventSpecT } from '../events/index.js'
import { readTokenFile } from '../events/sinks.js'
import { Command } from './commander.js'
import { apiServerOptions, type Output, parseSeconds, stdio, usage } from './common.js'
import type { ClientDeps } from './output.js'
import { startClient } from './output.js'

interface EventsFlags {
  since?: number
  tag?: string
  job?: string
  action?: string
  outcome?: 'ok' | 'failed'
  limit: number
  follow?: boolean
  json?: boolean
  apiserver?: string
  tokenFile?: string
  timeout: number
  config?: string
}

export interface EventsDeps extends ClientDeps {
  /** Ends --follow (tests; the binary ends on a signal). */
  signal?: AbortSignal
  /** Called once the list is printed and --follow is watching (tests). */
  onFollowing?: () => void
  now?: () => number
}

const MAX_LIMIT = 100_000
/** How many printed names --follow remembers to skip a replay after a relist. */
const MAX_REMEMBERED = 200_000
const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** `10m`, `2h`, `1d`, `90s` (before now) or an ISO time: epoch ms. */
export function parseSince(value: string, now: number): number {
  const m = /^([0-9]{1,9})([smhd])$/.exec(value.trim())
  if (m) return now - Number(m[1]) * (UNITS[m[2] as string] as number)
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    const t = Date.parse(value)
    if (Number.isFinite(t)) return t
  }
  throw usage(`invalid --since ${value}: a duration (90s, 10m, 2h, 1d) or an ISO time (2026-12-06T10:00:00Z)`)
}

function parseLimit(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIMIT)
    throw usage(`invalid --limit ${value}: a whole number from 1 to ${MAX_LIMIT}`)
  return n
}

/** One line: time, action, outcome, subject, who and where, then details and the error. */
export function formatEvent(spec: EventSpecT): string {
  const details = Object.entries(spec.details ?? {})
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ')
  return [
    spec.time,
    spec.action.padEnd(10),
    spec.outcome.padEnd(6),
    spec.subject,
    `by ${spec.actor} on ${spec.host}`,
    ...(spec.job && spec.job !== spec.subject ? [`job=${spec.job}`] : []),
    ...(details ? [details] : []),
    ...(spec.error ? [`error: ${spec.error}`] : []),
  ].join('  ')
}

export function eventsCommand(io: Output = stdio, deps: EventsDeps = {}, name = 'events'): Command {
  return apiServerOptions(new Command(name), { tokenFile: true })
    .description(
      'The event log: pushes, tag puts/moves/deletes, removes, GC, job and task transitions, and their failures, oldest first.',
    )
    .option('--since <time>', 'only events since a duration ago (10m, 2h, 1d) or an ISO time', (v) =>
      parseSince(v, (deps.now ?? Date.now)()),
    )
    .option('--tag <tag>', 'only events about this tag')
    .option('--job <name>', 'only events of this Distribution job')
    .option(
      '--action <action>',
      'only this action (push, tag.put, tag.move, tag.delete, remove, gc, job.<phase>, task.<phase>), or a family: tag.*, job.*',
    )
    .option('--outcome <outcome>', 'only ok or failed events', (v) => {
      if (v !== 'ok' && v !== 'failed') throw usage(`invalid --outcome ${v}: ok or failed`)
      return v
    })
    .option('--limit <n>', 'print at most the newest N of the past events', parseLimit, 1000)
    .option('--follow', 'after the past events, print new ones as they come (until interrupted)')
    .option('--json', 'one JSON object per event and line: {name, time, action, ...}')
    .option(
      '--timeout <seconds>',
      'fail after this many seconds without an answer to the list (0 = none)',
      parseSeconds,
      30,
    )
    .option('--config <file>', 'client config file (default: $SHOAL_CONFIG, else /etc/shoal/client.yaml)')
    .addHelpText(
      'after',
      '\nExamples:\n  shoal events --since 1h\n  shoal events --tag 10.0.0.7-/data/ref-prices.csv:latest --json\n  shoal events --job nightly-prices --follow\n',
    )
    .action(async (f: EventsFlags) => {
      const { settings } = startClient(io, { config: f.config }, deps)
      const tokenFile = f.tokenFile ?? settings.tokenFile
      const token = tokenFile
        ? await readTokenFile(tokenFile).catch((e) => Promise.reject(usage(toShoalError(e).message)))
        : undefined
      const base = f.apiserver ?? settings.apiserver
      const url = /^https?:\/\//.test(base) ? base : `http://${base}`
      const client = new ResourceClient<EventSpecT>(url, EventKind, { token, timeoutMs: f.timeout * 1000 })
      const wanted = filterOf(f)
      const print = (e: EventResource) =>
        io.out(f.json ? JSON.stringify({ name: e.metadata.name, ...e.spec }) : formatEvent(e.spec))

      const list = await client.list(EVENTS_NAMESPACE, { fieldSelector: wanted.selector })
      const past = list.items.filter((e) => wanted.matches(e.spec)).slice(-f.limit)
      for (const e of past) print(e)
      if (!f.follow) return

      // Printed names, so a relist after a 410 (which replays what is there as ADDED) prints nothing twice.
      const printed = new Set(list.items.map((e) => e.metadata.name))
      const remember = (name: string) => {
        printed.add(name)
        if (printed.size > MAX_REMEMBERED) printed.delete(printed.values().next().value as string)
      }
      const watch = client.watch({
        namespace: EVENTS_NAMESPACE,
        fieldSelector: wanted.selector,
        resourceVersion: list.metadata.resourceVersion,
        signal: deps.signal,
        retryMs: 1000,
      })
      deps.onFollowing?.()
      for await (const ev of watch) {
        if (ev.type !== 'ADDED' && ev.type !== 'MODIFIED') continue
        const e = ev.object as EventResource
        if (printed.has(e.metadata.name) || !wanted.matches(e.spec)) continue
        remember(e.metadata.name)
        print(e)
      }
    })
}

/**
 * The server-side fieldSelector (what it can express: values without commas) and the same test
 * on the client (for --since, and for values the selector syntax cannot carry).
 */
function filterOf(f: EventsFlags): { selector: string | undefined; matches: (s: EventSpecT) => boolean } {
  // `job.*`: every action under `job.` (matched here; the selector knows only equality).
  const family = f.action?.endsWith('.*') ? f.action.slice(0, -1) : undefined
  const eq: [keyof EventSpecT, string | undefined][] = [
    ['tag', f.tag],
    ['job', f.job],
    ['action', family ? undefined : f.action],
    ['outcome', f.outcome],
  ]
  const selector = eq
    .filter(([, v]) => v !== undefined && !v.includes(','))
    .map(([k, v]) => `spec.${k}=${v}`)
    .join(',')
  return {
    selector: selector || undefined,
    matches: (s) =>
      eq.every(([k, v]) => v === undefined || s[k] === v) &&
      (family === undefined || s.action.startsWith(family)) &&
      (f.since === undefined || Date.parse(s.time) >= f.since),
  }
}
