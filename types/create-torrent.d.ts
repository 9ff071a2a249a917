declare module 'create-torrent' {
  interface CreateTorrentOptions {
    name?: string
    creationDate?: Date
    comment?: string
    createdBy?: string
    private?: boolean | number
    pieceLength?: number
    maxPieceLength?: number
    announceList?: string[][]
    urlList?: string[]
    info?: Record<string, unknown>
    onProgress?: (hashedLength: number, estimatedTorrentLength: number) => void
  }
  type Callback = (err: Error | null, torrent?: Uint8Array) => void
  function createTorrent(
    input: string | string[] | Uint8Array,
    opts: CreateTorrentOptions,
    cb: Callback,
  ): void
  export default createTorrent
}
