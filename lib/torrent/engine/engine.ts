/**
 * The BitTorrent engine of one daemon, as lib/agent and lib/herd see it: one TCP listener and
 * peer id shared by all torrents, and seed / download / remove / stats by infohash.
 *
 * Everything torrents and peers need from the engine (handshake routing, dials, bans, metrics)
 * lives in EngineCore, held in a #private field: callers see only the API below, and the hot
 * paths call EngineCore directly rather than through this class.
 */
import { type AddressInfo, createServer, type Server } from 'node:net'
import type { InfoHash, MetaInfo } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import { Lifecycle, listenError, type Service } from '../../lifecycle/index.js'
import type { DownloadOptions, DownloadStats, EngineOptions, TorrentStorage } from '../types.js'
import { EngineCore } from './engine-core.js'
import type { Torrent } from './torrent.js'

export class TorrentEngine implements Service {
  readonly #core: EngineCore
  readonly #host: string
  readonly #requestedPort: number
  readonly #listener: Server | undefined
  readonly #life: Lifecycle
  #server: Server | undefined

  constructor(opts: EngineOptions & { listener?: Server }) {
    this.#host = opts.host ?? '0.0.0.0'
    this.#requestedPort = opts.port
    this.#listener = opts.listener
    this.#core = new EngineCore(opts, this.#host)
    this.#life = new Lifecycle('torrent engine', {
      start: () => this.#listen(),
      stop: async () => {
        await this.#core.shutdown('engine stopped')
        const server = this.#server
        this.#server = undefined
        if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
        this.#core.logger.info('peer listener stopped')
      },
      // Only the listener can be left by a failed start; the engine may start again.
      rollback: async () => {
        const server = this.#server
        this.#server = undefined
        if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
      },
    })
  }

  /** The bound peer port; 0 until start() resolved. */
  get port(): number {
    return this.#core.port
  }

  get peerId(): Buffer {
    return this.#core.peerId
  }

  /** Opens the peer listener (lib/lifecycle contract: idempotent, undone when it fails or `signal` aborts). */
  start(signal?: AbortSignal): Promise<void> {
    return this.#life.start(signal)
  }

  /** Drops every torrent and closes the peer listener; the engine cannot start again. */
  stop(): Promise<void> {
    return this.#life.stop()
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
    if (this.#life.stopped) return Promise.reject(new ShoalError('ABORTED', 'torrent engine is stopped'))
    let torrent: Torrent
    try {
      torrent = this.#open(meta, storage)
    } catch (err) {
      return Promise.reject(err)
    }
    if (opts.onBadPiece) torrent.onBadPiece = opts.onBadPiece
    if (opts.ingressBytesPerSec !== undefined) torrent.setIngressCap(opts.ingressBytesPerSec)
    return torrent.wait(opts.signal)
  }

  /** Changes one torrent's own ingress cap (0 = unlimited); false when it is not open. */
  setIngressCap(infoHash: InfoHash, bytesPerSec: number): boolean {
    const torrent = this.#core.torrent(infoHash)
    torrent?.setIngressCap(bytesPerSec)
    return torrent !== undefined
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
      server.once('error', (err) =>
        reject(listenError('peer listener', this.#host, this.#requestedPort, err)),
      )
      const onListening = () => {
        server.removeAllListeners('error')
        server.on('error', (err) => core.logger.error({ err }, 'peer listener error'))
        this.#server = server
        core.listening((server.address() as AddressInfo).port)
        core.logger.info(
          { host: this.#host, port: core.port, peerId: core.peerId.toString('latin1', 0, 8) },
          'peer listener started',
        )
        resolve()
      }
      if (this.#listener) server.listen(this.#listener, onListening)
      else server.listen(this.#requestedPort, this.#host, onListening)
    })
  }

  #open(meta: MetaInfo, storage: TorrentStorage): Torrent {
    if (this.#life.stopped) throw new ShoalError('UNAVAILABLE', 'torrent engine is stopped')
    // Announcing before the listener is bound would advertise port 0.
    if (this.#server === undefined) throw new ShoalError('UNAVAILABLE', 'torrent engine is not started')
    return this.#core.open(meta, storage)
  }
}
