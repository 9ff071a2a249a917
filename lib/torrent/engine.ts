/**
 * The BitTorrent engine of one daemon, as lib/agent and lib/herd see it: one TCP listener and
 * peer id shared by all torrents, and seed / download / remove / stats by infohash.
 *
 * Everything torrents and peers need from the engine (handshake routing, dials, bans, metrics)
 * lives in EngineCore, held in a #private field: callers see only the API below, and the hot
 * paths call EngineCore directly rather than through this class.
 */
import { type AddressInfo, createServer, type Server } from 'node:net'
import type { InfoHash, MetaInfo } from '../core/index.js'
import { ShoalError } from '../errors/index.js'
import { EngineCore } from './engine-core.js'
import type { Torrent } from './torrent.js'
import type { DownloadOptions, DownloadStats, EngineOptions, TorrentStorage } from './types.js'

export class TorrentEngine {
  readonly #core: EngineCore
  readonly #host: string
  readonly #requestedPort: number
  #server: Server | undefined
  #starting: Promise<void> | undefined
  #stopping: Promise<void> | undefined

  constructor(opts: EngineOptions) {
    this.#host = opts.host ?? '0.0.0.0'
    this.#requestedPort = opts.port
    this.#core = new EngineCore(opts, this.#host)
  }

  /** The bound peer port; 0 until start() resolved. */
  get port(): number {
    return this.#core.port
  }

  get peerId(): Buffer {
    return this.#core.peerId
  }

  start(): Promise<void> {
    if (this.#stopping) return Promise.reject(new ShoalError('UNAVAILABLE', 'torrent engine is stopped'))
    this.#starting ??= this.#listen().catch((err: unknown) => {
      this.#starting = undefined
      throw new ShoalError(
        'UNAVAILABLE',
        `cannot listen on ${this.#host}:${this.#requestedPort}: ${(err as Error).message}`,
        { cause: err },
      )
    })
    return this.#starting
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.#core.shutdown('engine stopped')
      const server = this.#server
      this.#server = undefined
      if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
      this.#core.logger.info('peer listener stopped')
    })()
    return this.#stopping
  }

  /**
   * Serves `storage` for `meta` (idempotent with the same storage). Throws TORRENT_ERROR when
   * the infohash is already open with another storage object: remove() it first.
   */
  seed(meta: MetaInfo, storage: TorrentStorage): void {
    this.#open(meta, storage)
  }

  /**
   * Downloads into `storage`; concurrent calls with the same storage share one download (the
   * latest onBadPiece is the one called). Rejects with TORRENT_ERROR when the infohash is
   * already open (downloading or seeding) with another storage object: remove() it first.
   */
  download(meta: MetaInfo, storage: TorrentStorage, opts: DownloadOptions = {}): Promise<DownloadStats> {
    if (this.#stopping) return Promise.reject(new ShoalError('ABORTED', 'torrent engine is stopped'))
    let torrent: Torrent
    try {
      torrent = this.#open(meta, storage)
    } catch (err) {
      return Promise.reject(err)
    }
    if (opts.onBadPiece) torrent.onBadPiece = opts.onBadPiece
    return torrent.wait(opts.signal)
  }

  remove(infoHash: InfoHash): void {
    const torrent = this.#core.torrent(infoHash)
    if (torrent) this.#core.removeTorrent(torrent, 'removed')
  }

  stats(infoHash: InfoHash): DownloadStats | undefined {
    return this.#core.torrent(infoHash)?.snapshot()
  }

  #listen(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const core = this.#core
      const server = createServer({ noDelay: true }, core.accept)
      server.once('error', reject)
      server.listen(this.#requestedPort, this.#host, () => {
        server.off('error', reject)
        server.on('error', (err) => core.logger.error({ err }, 'peer listener error'))
        this.#server = server
        core.listening((server.address() as AddressInfo).port)
        core.logger.info(
          { host: this.#host, port: core.port, peerId: core.peerId.toString('latin1', 0, 8) },
          'peer listener started',
        )
        resolve()
      })
    })
  }

  #open(meta: MetaInfo, storage: TorrentStorage): Torrent {
    if (this.#stopping) throw new ShoalError('UNAVAILABLE', 'torrent engine is stopped')
    // Announcing before the listener is bound would advertise port 0.
    if (this.#server === undefined) throw new ShoalError('UNAVAILABLE', 'torrent engine is not started')
    return this.#core.open(meta, storage)
  }
}
