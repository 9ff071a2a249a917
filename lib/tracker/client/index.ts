/**
 * lib/tracker/client: what other daemons use to talk to trackers. TrackerClient speaks to one
 * tracker; TrackerSet picks the tracker per infohash (rendezvous hashing) with failover.
 */
export { rendezvousOrder, rendezvousWeight } from './rendezvous.js'
export {
  encodeBytes,
  isTrackerFault,
  isTrackerRefusal,
  MAX_ANNOUNCE_RESPONSE_BYTES,
  parseAnnounceResponse,
  type TrackerAnnounceRequest,
  type TrackerAnnounceResponse,
  TrackerClient,
  type TrackerPeer,
} from './tracker-client.js'
export { type TrackerHealth, type TrackerLike, TrackerSet, type TrackerSetOptions } from './tracker-set.js'
