/**
 * The seam between the origin and the BitTorrent engine. The origin does not import lib/torrent:
 * the caller injects anything with `seed`/`remove` (the real engine in `shoal herd` and
 * shoal-origin; nothing, or a recorder, in tests). Seeds keeps track of what was handed over so
 * deletes and shutdown take it back.
 */
import type { Digest, InfoHash, MetaInfo } from '../../core/index.js'
import type { Logger } from '../../log/index.js'
import type { BlobStore, PieceStorage, SeedFile } from '../../store/index.js'

/** Storage handed to the engine: the shape of lib/torrent's TorrentStorage. */
export type SeedStorage = PieceStorage

export interface Seeder {
  seed(meta: MetaInfo, storage: SeedStorage): void
  remove(infoHash: InfoHash): void
}

export class Seeds {
  private readonly seeded = new Map<string, { infoHash: InfoHash; file: SeedFile }>()

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

  /** Starts seeding a cached blob; seeding it again is a no-op. Empty blobs have nothing to seed. */
  async add(digest: Digest, meta: MetaInfo): Promise<void> {
    if (!this.seeder || meta.length === 0) return
    const current = this.seeded.get(digest.hex)
    if (current?.infoHash.equals(meta.infoHash)) return
    if (current) this.remove(digest)
    const file = await this.store.openSeed(digest, meta)
    this.seeded.set(digest.hex, { infoHash: meta.infoHash, file })
    try {
      this.seeder.seed(meta, file)
    } catch (err) {
      this.seeded.delete(digest.hex)
      void file.close()
      throw err
    }
    this.log.debug({ digest: digest.toString(), infoHash: meta.infoHash.hex }, 'seeding')
  }

  remove(digest: Digest): void {
    const entry = this.seeded.get(digest.hex)
    if (!entry) return
    this.seeded.delete(digest.hex)
    try {
      this.seeder?.remove(entry.infoHash)
    } catch (err) {
      this.log.warn({ err, digest: digest.toString() }, 'seeder refused to remove a torrent')
    }
    void entry.file.close()
  }

  removeAll(): void {
    for (const hex of [...this.seeded.keys()]) {
      const entry = this.seeded.get(hex)
      if (entry) this.remove(entry.file.digest)
    }
  }
}
