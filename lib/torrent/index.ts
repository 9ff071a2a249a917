/**
 * lib/torrent: the BitTorrent v1 download/seed engine (our own wire codec over TCP, BEP 3 with
 * BEP 6 Fast and BEP 10 extended handshakes).
 * Daemons use TorrentEngine with their own TorrentStorage and PeerSource.
 */

export { Bitfield } from './bitfield.js'
export { TorrentEngine } from './engine.js'
export { MemoryStorage, type PieceLayout } from './memory-storage.js'
export { PieceBuffer, PiecePicker } from './picker.js'
export { Pipeline, type PipelineOptions } from './pipeline.js'
export { RequestQueue } from './request-queue.js'
export { TorrentTuningConfig } from './tuning.js'
export {
  type AnnouncePeer,
  type AnnounceRequest,
  type AnnounceResponse,
  type BadPiece,
  BLOCK_SIZE,
  classifyPeerId,
  DEFAULTS,
  type DownloadOptions,
  type DownloadStats,
  type EngineOptions,
  type EngineTuning,
  MAX_BLOCK_SIZE,
  MAX_MESSAGE_LENGTH,
  type PeerClass,
  type PeerSource,
  type TorrentStorage,
} from './types.js'
export { frameError, MSG, type WireHandler, WireReader } from './wire.js'
