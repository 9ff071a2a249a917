/**
 * lib/torrent: the BitTorrent v1 download/seed engine (our own wire codec over TCP, BEP 3 with
 * BEP 6 Fast and BEP 10 extended handshakes).
 * Daemons use TorrentEngine with their own TorrentStorage and PeerSource.
 *
 * Layers, each a folder; a lower layer never imports a higher one except for types:
 * - wire/: the codec (wire.ts), MSE/PE (mse.ts, rc4.ts), socket reads and writes
 *   (read-buffer.ts, peer-writer.ts), and Peer: one connection with its handshake facts.
 * - download/: what we fetch: the picker (sole writer of piece availability), the scheduler
 *   and per-peer pipelines, the downloader (verifies and writes), PeerDownload records.
 * - upload/: what we serve: choking and slots (uploader.ts), serve-once for capped origins,
 *   request queues, block buffers, PeerUpload records.
 * - engine/: one Torrent joining both sides over its PeerSet and announcer; the engine that
 *   listens, dials, bans and owns the lifecycle.
 * At the top: the contracts with the rest of Shoal (types.ts, storage.ts), the one table of
 * tunables (tuning.ts) and MemoryStorage for tests and tools.
 */

export { PieceBuffer, PiecePicker } from './download/picker.js'
export { Pipeline, type PipelineOptions } from './download/pipeline.js'
export { TorrentEngine } from './engine/engine.js'
export { MemoryStorage, type PieceLayout } from './memory-storage.js'
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
export { RequestQueue } from './upload/request-queue.js'
export { Bitfield } from './wire/bitfield.js'
export { frameError, MSG, type WireHandler, WireReader } from './wire/wire.js'
