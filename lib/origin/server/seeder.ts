/**
 * The seam between the origin and the BitTorrent engine. The origin imports only lib/torrent's
 * types: the caller injects anything with `seed`/`remove` (the real engine, wired in
 * lib/origin/node.ts; nothing, or a recorder, in tests). Seeds keeps track of what was handed over so
 * deletes and shutdown take it back.
 */
import type { Digest, InfoHash, MetaInfo } from '../../core/index.js'
import type { Logger } from '../../log/index.js'
import type { BlobStore, SeedFile } from '../../store/index.js'
import type { TorrentStorage } from '../../torrent/index.js'

export interface Seeder {
  seed(meta: MetaInfo, storage: TorrentStorage): void
  remove(infoHash: InfoHash): void
}

/**
 * One blob handed (or being handed) to the engine. The entry is in the map from the moment
 * add() starts, before the seed file is opened, so concurrent add()/remove() calls for the same
 * digest see it: a second add() of the same torrent waits for the first instead of opening a
 * second file, and a remove() while the file is opening makes the opener close it.
 */
interface Entry {
  readonly infoHash: InfoHash
  /** Settles once the file is open and handed to the engine (or the attempt failed). */
  opening: Promise<void>
  /** Set once open; undefined while opening. */
  file?: SeedFile
}

export class Seeds {
  private readonly seeded = new Map<string, Entry>()
  /** Closes of removed seed files not finished yet (awaited by close()). */
  private readonly closing = new Set<Promise<void>>()
  private closed = false

  constructor(
    private readonly store: BlobStore,
    private readonly seeder: Seeder | undefined,
    private readonly log: Logger,
  ) {}

  get enabled(): boolean {
    return this.seeder !== undefined
  }

  get count(): number {
    return this.seeded.size
  }

  /**
   * When the engine last read the blob (ms since the epoch; 0: never), and whether its torrent
   * is active (reads in flight or in the seed file's last idle period), for the cache policy.
   */
  activity(digest: Digest): { lastReadAt: number; active: boolean } {
    const file = this.seeded.get(digest.hex)?.file
    return file ? { lastReadAt: file.lastReadAt, active: file.busy } : { lastReadAt: 0, active: false }
  }

  /** Accepts add() again after close() (an origin started again after a failed start). */
  open(): void {
    this.closed = false
  }

  /**
   * Starts seeding a cached blob; seeding it again is a no-op (and waits for a start already in
   * progress). Empty blobs have nothing to seed. After close() nothing new is seeded.
   */
  add(digest: Digest, meta: MetaInfo): Promise<void> {
    if (!this.seeder || meta.length === 0 || this.closed) return Promise.resolve()
    const current = this.seeded.get(digest.hex)
    if (current?.infoHash.equals(meta.infoHash)) return current.opening
    if (current) this.remove(digest)
    const entry: Entry = { infoHash: meta.infoHash, opening: Promise.resolve() }
    this.seeded.set(digest.hex, entry)
    entry.opening = this.start(digest, meta, this.seeder, entry)
    return entry.opening
  }

  /** add(), logging a failure: the blob is stored and durable, failing to seed must not fail the request. */
  async tryAdd(digest: Digest, meta: MetaInfo): Promise<void> {
    try {
      await this.add(digest, meta)
    } catch (err) {
      this.log.warn({ err, digest: digest.toString() }, 'cannot seed blob')
    }
  }

  /** Takes the blob back from the engine and closes its file. Idempotent. */
  remove(digest: Digest): Promise<void> {
    const entry = this.seeded.get(digest.hex)
    if (!entry) return Promise.resolve()
    this.seeded.delete(digest.hex)
    // Still opening: start() sees the entry is gone and closes the file itself.
    if (!entry.file) return entry.opening.catch(() => undefined)
    try {
      this.seeder?.remove(entry.infoHash)
    } catch (err) {
      this.log.warn({ err, digest: digest.toString() }, 'seeder refused to remove a torrent')
    }
    return this.closeFile(entry.file)
  }

  /** Removes everything and refuses new seeds; resolves once every seed file is closed. */
  async close(): Promise<void> {
    this.closed = true
    const pending = [...this.seeded.values()].map((e) => e.opening.catch(() => undefined))
    for (const entry of [...this.seeded.values()]) {
      const digest = entry.file?.digest
      if (digest) void this.remove(digest)
    }
    // Entries still opening: remove them so their opener closes the file, then wait for it.
    this.seeded.clear()
    await Promise.all(pending)
    await Promise.all([...this.closing])
  }

  private async start(digest: Digest, meta: MetaInfo, seeder: Seeder, entry: Entry): Promise<void> {
    const owns = () => this.seeded.get(digest.hex) === entry
    let file: SeedFile
    try {
      file = await this.store.openSeed(digest, meta)
    } catch (err) {
      if (owns()) this.seeded.delete(digest.hex)
      throw err
    }
    if (!owns() || this.closed) {
      // Removed (deleted, replaced or shut down) while the file was opening.
      await this.closeFile(file)
      return
    }
    entry.file = file
    try {
      seeder.seed(meta, file)
    } catch (err) {
      this.seeded.delete(digest.hex)
      await this.closeFile(file)
      throw err
    }
    this.log.debug({ digest: digest.toString(), infoHash: meta.infoHash.hex }, 'seeding')
  }

  private closeFile(file: SeedFile): Promise<void> {
    const p = file.close().catch((err) => this.log.warn({ err }, 'cannot close a seed file'))
    this.closing.add(p)
    void p.finally(() => this.closing.delete(p))
    return p
  }
}
