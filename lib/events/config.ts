/**
 * The herd's `events:` section (docs/events.md): retention of the event log and the recorder's
 * queue. The defaults work: 10,000 events or 7 days, whichever is smaller, pruned every minute.
 */
import { z } from '../config/index.js'

export const EventsConfigSchema = z.strictObject({
  /** false: events are only logged, nothing is written to the resource store. */
  enabled: z.boolean().default(true),
  retention: z
    .strictObject({
      /** The newest this many events are kept. */
      maxEvents: z.number().int().min(1).max(1_000_000).default(10_000),
      /** Events older than this are deleted. */
      maxAgeSeconds: z
        .number()
        .int()
        .min(1)
        .max(10 * 365 * 86_400)
        .default(7 * 86_400),
      /** How often the herd's pruner runs (and once at start). */
      pruneIntervalSeconds: z.number().int().min(1).max(86_400).default(60),
    })
    .prefault({}),
  queue: z
    .strictObject({
      /** Events waiting for the store at most; more are dropped and counted. */
      maxQueued: z.number().int().min(1).max(1_000_000).default(10_000),
      /** How long a stopping herd keeps writing queued events. */
      flushMs: z.number().int().min(0).max(60_000).default(2000),
    })
    .prefault({}),
})
export type EventsConfig = z.infer<typeof EventsConfigSchema>

/**
 * A daemon outside the herd that writes its events to the herd's apiserver (not wired into the
 * standalone daemons' configs yet: they log events only; agents and tools can use it).
 */
export const RemoteEventsConfigSchema = z.strictObject({
  /** The apiserver: http://host:port or host:port (the herd's basePort + 6, 15006). */
  apiserver: z.string().min(1),
  /** A file holding a write token of the apiserver (auth.tokens). */
  tokenFile: z.string().min(1).optional(),
  maxQueued: z.number().int().min(1).max(1_000_000).default(10_000),
  timeoutMs: z.number().int().min(100).max(120_000).default(5000),
})
export type RemoteEventsConfig = z.infer<typeof RemoteEventsConfigSchema>
