/**
 * The .torrent of a cached blob, kept as a sidecar next to it: read, or generated (hashing the
 * whole blob) once however many requests ask at the same time.
 */
import { bencodeDecode, bencodeEncode } from '../../core/bencode.js'
import { type Digest, MetaInfo } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { BlobStore } from '../../store/index.js'

export class MetaInfos {
  private readonly generating = new Map<string, Promise<MetaInfo>>()

  constructor(
    private readonly opts: {
      store: BlobStore
      /** Announce URL written into metainfo. */
      announce: string
      log: Logger
    },
  ) {}

  /**
   * Reads (or generates and stores) the blob's metainfo. A sidecar that no longer parses or does
   * not match the blob is regenerated; one with another tracker URL gets ours (infohash unchanged).
   */
  ensure(digest: Digest): Promise<MetaInfo> {
    const running = this.generating.get(digest.hex)
    if (running) return running
    const job = this.load(digest).finally(() => this.generating.delete(digest.hex))
    this.generating.set(digest.hex, job)
    return job
  }

  /** Generation in progress: it cannot be aborted, and its sidecar is useful at the next start. */
  running(): Promise<MetaInfo>[] {
    return [...this.generating.values()]
  }

  private async load(digest: Digest): Promise<MetaInfo> {
    const { store, announce, log } = this.opts
    const st = await store.stat(digest)
    if (!st) throw new ShoalError('BLOB_NOT_FOUND', `blob ${digest} is not in this origin's cache`)
    const raw = await store.readMetaInfo(digest)
    if (raw) {
      let meta: MetaInfo | undefined
      try {
        meta = MetaInfo.parse(raw)
      } catch (err) {
        log.warn({ err, digest: digest.toString() }, 'metainfo sidecar is corrupt; regenerating')
      }
      if (meta && meta.length === st.size && meta.name === digest.hex) {
        if (meta.announce === announce) return meta
        const fixed = MetaInfo.parse(withAnnounce(meta.raw, announce))
        await store.writeMetaInfo(digest, fixed.raw)
        return fixed
      }
    }
    const meta = await MetaInfo.create(store.blobPath(digest), { name: digest.hex, announce, size: st.size })
    await store.writeMetaInfo(digest, meta.raw)
    return meta
  }
}

/** The same torrent with `announce` as its only tracker; the info dictionary is untouched. */
function withAnnounce(raw: Buffer, announce: string): Buffer {
  const decoded = bencodeDecode(raw) as Record<string, unknown>
  decoded.announce = Buffer.from(announce)
  decoded['announce-list'] = [[Buffer.from(announce)]]
  return bencodeEncode(decoded)
}
