/**
 * The event log (docs/events.md): the `Event` kind, the recorders daemons use, the herd's
 * retention pruner, and the call the job controller makes on each transition.
 */
import type { Logger } from '../log/index.js'
import type { Registry } from '../metrics/index.js'
import type { RemoteEventsConfig } from './config.js'
import { type EventRecorder, LogEventRecorder, QueuedEventRecorder } from './recorder.js'
import { RemoteEventSink } from './sinks.js'

export {
  type EventsConfig,
  EventsConfigSchema,
  type RemoteEventsConfig,
  RemoteEventsConfigSchema,
} from './config.js'
export { type JobTransition, recordJobTransition } from './jobs.js'
export {
  EVENTS_GROUP,
  EVENTS_NAMESPACE,
  EVENTS_VERSION,
  EventAction,
  EventKind,
  type EventResource,
  EventSpec,
  type EventSpecT,
  eventName,
  namePrefixAt,
  timeOfName,
} from './kind.js'
export { EventPruner } from './pruner.js'
export {
  type EventInput,
  type EventRecorder,
  type EventSink,
  eventSpec,
  forService,
  LogEventRecorder,
  QueuedEventRecorder,
  type RecorderOptions,
} from './recorder.js'
export { RemoteEventSink, readTokenFile, StoreEventSink } from './sinks.js'

/** A recorder posting to a remote apiserver; its start() reads the token file (CONFIG_INVALID when it cannot). */
export function createRemoteRecorder(
  config: RemoteEventsConfig,
  deps: { logger: Logger; service?: string; host?: string; registry?: Registry },
): QueuedEventRecorder {
  const sink = new RemoteEventSink(config.apiserver, {
    tokenFile: config.tokenFile,
    timeoutMs: config.timeoutMs,
  })
  return new QueuedEventRecorder(sink, { ...deps, maxQueued: config.maxQueued })
}

/**
 * The recorder of a daemon (proxy, build-index): the one it is given (the herd's), else one
 * posting to the apiserver of its `events:` config (started and stopped with the daemon: the
 * `owned` part), else log-only.
 */
export function daemonEvents(
  config: RemoteEventsConfig | undefined,
  deps: { logger: Logger; service: string; registry?: Registry; events?: EventRecorder },
): { events: EventRecorder; owned: QueuedEventRecorder | undefined } {
  if (deps.events) return { events: deps.events, owned: undefined }
  if (!config) return { events: new LogEventRecorder(deps), owned: undefined }
  const owned = createRemoteRecorder(config, deps)
  return { events: owned, owned }
}
