/**
 * The `Event` kind of the resource API (docs/events.md): one thing that happened to Shoal's data
 * or jobs (a push, a tag put/move/delete, a GC removal, a job or task transition) and whether it
 * worked. Events are written once and never updated; the herd's pruner deletes the oldest.
 *
 * Names sort by time (`<yyyymmddhhmmssmmm>-<random>-<seq>`), and the store lists in name
 * order, so a list is the log in time order without sorting anything.
 */
import { randomBytes } from 'node:crypto'
import type { KindDefinition } from '../apiserver/registry.js'
import type { Resource } from '../apiserver/types.js'
import { z } from '../config/index.js'

export const EVENTS_GROUP = 'shoal.io'
export const EVENTS_VERSION = 'v1'
/** Every event lives in this namespace: one log per store. */
export const EVENTS_NAMESPACE = 'shoal-events'

/** What the `details` object may hold, as JSON: small, so one event stays a few hundred bytes. */
export const MAX_DETAILS_BYTES = 4096
const MAX_DETAIL_KEYS = 32

/**
 * `push`, `tag.put`, `tag.move`, `tag.delete`, `remove`, `gc`, `job.<phase>`, `task.<phase>`...:
 * lower-case words joined by dots, so new producers add actions without a schema change.
 */
export const EventAction = z
  .string()
  .regex(
    /^[a-z][a-z0-9_-]{0,31}(\.[a-z][a-z0-9_-]{0,31}){0,3}$/,
    'lower-case words joined by dots, e.g. tag.move',
  )

const Details = z
  .record(z.string().max(64), z.unknown())
  .refine((d) => Object.keys(d).length <= MAX_DETAIL_KEYS, `at most ${MAX_DETAIL_KEYS} keys`)
  .refine((d) => JSON.stringify(d).length <= MAX_DETAILS_BYTES, `at most ${MAX_DETAILS_BYTES} bytes as JSON`)

export const EventSpec = z.strictObject({
  /** ISO 8601, when it happened (the recorder's clock). */
  time: z.string().datetime({ offset: true }),
  /** Who asked: an API token's name, a pusher's address or x-shoal-actor, or a service name. */
  actor: z.string().min(1).max(256),
  /** The host whose process recorded it. */
  host: z.string().min(1).max(256),
  action: EventAction,
  /** What it happened to: a tag, a digest, a job name. */
  subject: z.string().min(1).max(4096),
  outcome: z.enum(['ok', 'failed']),
  /** The ShoalError code and message of a failure. */
  error: z.string().max(2048).optional(),
  details: Details.default({}),
  /** Set when the event concerns a tag / a digest / a Distribution job: what `shoal events --tag/--job` select on. */
  tag: z.string().min(1).max(4096).optional(),
  digest: z.string().min(1).max(200).optional(),
  job: z.string().min(1).max(253).optional(),
})
export type EventSpecT = z.infer<typeof EventSpec>
export type EventResource = Resource<EventSpecT>

/**
 * Selectable fields: values are compared as strings; an absent field matches only `!=`. The
 * store matches them in memory, so a selective list still reads the whole collection (bounded
 * by the retention limit).
 */
export const EventKind: KindDefinition = {
  group: EVENTS_GROUP,
  version: EVENTS_VERSION,
  kind: 'Event',
  plural: 'events',
  spec: EventSpec,
  selectableFields: {
    'spec.action': (o) => specOf(o).action,
    'spec.actor': (o) => specOf(o).actor,
    'spec.host': (o) => specOf(o).host,
    'spec.outcome': (o) => specOf(o).outcome,
    'spec.subject': (o) => specOf(o).subject,
    'spec.tag': (o) => specOf(o).tag,
    'spec.digest': (o) => specOf(o).digest,
    'spec.job': (o) => specOf(o).job,
  },
}

function specOf(o: Resource): Partial<EventSpecT> {
  return (o.spec ?? {}) as Partial<EventSpecT>
}

let sequence = 0
const processTag = randomBytes(3).toString('hex')

/**
 * A name that sorts by `time` (millisecond digits first), unique across writers (a random part
 * per process) and within one (a counter): `20261206001512345-a1b2c3-000001`.
 */
export function eventName(time: Date): string {
  const iso = time.toISOString() // 2026-12-06T00:15:12.345Z
  const digits = iso.replace(/[^0-9]/g, '').slice(0, 17)
  sequence = (sequence + 1) % 1_000_000
  return `${digits}-${processTag}-${String(sequence).padStart(6, '0')}`
}

/** The time part of an event name as epoch ms (NaN when the name is not one of ours). */
export function timeOfName(name: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{3})-/.exec(name)
  if (!m) return Number.NaN
  const [, y, mo, d, h, mi, s, ms] = m
  return Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}.${ms}Z`)
}

/** The name prefix of every event at or after `ms` (names compare as strings). */
export function namePrefixAt(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[^0-9]/g, '')
    .slice(0, 17)
}
