/**
 * The one storage contract of Shoal: what a torrent's bytes live on. The engine consumes it;
 * lib/store implements it (PieceFile for downloads, SeedFile for cached blobs), MemoryStorage is
 * for tests and tools. test/contract/torrent-storage.contract.ts holds every implementation to it.
 */
export interface TorrentStorage {
  readonly pieceCount: number
  /** true when piece i is present and verified; false for any i that is not a piece index */
  hasPiece(i: number): boolean
  /**
   * read `length` bytes at `offset` inside piece i (only called for pieces we have); with
   * `into` (at least `length` bytes, reused by the engine once the block is sent), read into
   * it and return a view of it; a smaller `into` is left alone. INVALID_RANGE for a piece that
   * is absent or not a piece, or a block (length > 0) that does not fit inside its piece.
   */
  readBlock(piece: number, offset: number, length: number, into?: Buffer): Promise<Buffer>
  /**
   * Store a whole piece whose SHA-1 the engine already verified; the storage persists its
   * bitfield. The engine reuses `data` once the promise settled: keep no reference to it.
   * INVALID_RANGE for an index that is not a piece, SIZE_MISMATCH for data that is not the
   * piece's size; a piece already present is left as it is. Read-only storage (a seed) refuses
   * every write with BAD_REQUEST.
   */
  writePiece(piece: number, data: Buffer): Promise<void>
}
