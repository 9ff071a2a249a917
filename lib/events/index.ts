/**
 * The event log (docs/events.md): the `Event` kind, the recorders daemons use, the herd's
 * retention pruner, and the call the job controller makes on each transition.
 */
import type { Logger } from '../log/index.js'
import type { Registry } from '../metrics/index.js'
import type { RemoteEventsConfig } from './config.js'
import { QueuedEventRecorder } from './recorder.js'
import { RemoteEventSink, readTokenFile } from './sinks.js'

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

/** A recorder posting to a remote apiserver (token read from its file now); start() it. */
export async function createRemoteRecorder(
  config: RemoteEventsConfig,
  deps: { logger: Logger; service?: string; host?: string; registry?: Registry },
): Promise<QueuedEventRecorder> {
  const token = config.tokenFile ? await readTokenFile(config.tokenFile) : undefined
  const url = /^https?:\/\//.test(config.apiserver) ? config.apiserver : `http://${config.apiserver}`
  return new QueuedEventRecorder(new RemoteEventSink(url, { token, timeoutMs: config.timeoutMs }), {
    ...deps,
    maxQueued: config.maxQueued,
  })
}
