/**
 * lib/torrent: the BitTorrent v1 download/seed engine (bittorrent-protocol Wire over TCP).
 * Daemons use TorrentEngine with their own TorrentStorage and PeerSource.
 */

export { Bitfield } from './bitfield.js'
export { TorrentEngine } from './engine.js'
export { MemoryStorage, type PieceLayout } from './memory-storage.js'
export { PieceBuffer, PiecePicker } from './picker.js'
export {
  type AnnouncePeer,
  type AnnounceRequest,
  type AnnounceResponse,
  BLOCK_SIZE,
  classifyPeerId,
  type DownloadStats,
  type EngineOptions,
  MAX_MESSAGE_LENGTH,
  MAX_SERVE_BLOCK,
  type PeerClass,
  type PeerSource,
  type TorrentStorage,
} from './types.js'
export { WireGuard } from './wire-guard.js'
