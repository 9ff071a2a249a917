/**
 * Every TorrentStorage implementation against the one contract: the engine's MemoryStorage, the
 * store's download (fresh, resumed from its bitfield, recovered from its piece log after a
 * crash) and the store's seed of a cached blob.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { Digest } from '../../lib/core/index.js'
import { BlobStore, type PieceFile, type VerifiableLayout } from '../../lib/store/index.js'
import { MemoryStorage } from '../../lib/torrent/index.js'
import {
  type StorageFixture,
  type StorageLayout,
  torrentStorageContract,
} from './torrent-storage.contract.js'

const pieceOf = (layout: StorageLayout, data: Buffer, i: number) =>
  data.subarray(i * layout.pieceLength, Math.min(layout.length, (i + 1) * layout.pieceLength))

/** A fresh store in a temp folder; `cleanup` closes what `opened` lists, then removes it. */
async function tempStore(opts?: ConstructorParameters<typeof BlobStore>[1]) {
  const root = await mkdtemp(join(tmpdir(), 'shoal-storage-contract-'))
  const store = new BlobStore(root, opts)
  await store.init()
  const opened: Array<{ close(): Promise<void> }> = []
  const cleanup = async () => {
    for (const s of opened.reverse()) await s.close().catch(() => undefined)
    await rm(root, { recursive: true, force: true })
  }
  return { root, store, opened, cleanup }
}

/** A download fixture over `file`, reopened through `store` (its bitfield and piece log). */
function downloadFixture(
  file: PieceFile,
  store: BlobStore,
  layout: StorageLayout,
  env: { opened: Array<{ close(): Promise<void> }>; cleanup(): Promise<void> },
): StorageFixture {
  return {
    storage: file,
    reopen: async () => {
      await file.close()
      const again = await store.openDownload(file.digest, layout)
      env.opened.push(again)
      return again
    },
    cleanup: env.cleanup,
  }
}

torrentStorageContract(t, {
  name: 'MemoryStorage',
  readOnly: false,
  persistent: false,
  open: async (layout, data, have) => {
    const storage = new MemoryStorage(layout)
    for (const i of have) await storage.writePiece(i, pieceOf(layout, data, i))
    return { storage, cleanup: async () => {} }
  },
})

torrentStorageContract(t, {
  name: 'store download (PieceFile)',
  readOnly: false,
  persistent: true,
  open: async (layout, data, have) => {
    const env = await tempStore()
    const file = await env.store.openDownload(Digest.fromBuffer(data), layout)
    env.opened.push(file)
    for (const i of have) await file.writePiece(i, pieceOf(layout, data, i))
    return downloadFixture(file, env.store, layout, env)
  },
})

torrentStorageContract(t, {
  name: 'store download resumed from its bitfield',
  readOnly: false,
  persistent: true,
  open: async (layout, data, have) => {
    const env = await tempStore()
    const digest = Digest.fromBuffer(data)
    // An earlier life wrote `have` and was closed (the agent stopped): its bitfield says so.
    const first = await env.store.openDownload(digest, layout)
    for (const i of have) await first.writePiece(i, pieceOf(layout, data, i))
    await first.close()
    const file = await env.store.openDownload(digest, layout)
    env.opened.push(file)
    return downloadFixture(file, env.store, layout, env)
  },
})

torrentStorageContract(t, {
  name: 'store download recovered from its piece log after a crash',
  readOnly: false,
  persistent: true,
  open: async (layout, data, have) => {
    const env = await tempStore()
    const digest = Digest.fromBuffer(data)
    // An earlier life checkpointed its first piece only, then "died" (nothing closed or
    // flushed); its piece log names every piece it wrote. Another store stands for the restart.
    const crashed = new BlobStore(env.root, { bitfieldFlushMs: 3_600_000, checkpointsPerBlob: 0 })
    const first = await crashed.openDownload(digest, layout)
    for (const [n, i] of have.entries()) {
      await first.writePiece(i, pieceOf(layout, data, i))
      if (n === 0) await first.flush()
    }
    const meta: VerifiableLayout = {
      ...layout,
      pieceHash: (i) =>
        createHash('sha1')
          .update(pieceOf(layout, data, i))
          .digest(),
    }
    const file = await env.store.openDownload(digest, meta)
    env.opened.push(first, file)
    return downloadFixture(file, env.store, meta, env)
  },
})

torrentStorageContract(t, {
  name: 'store seed (SeedFile)',
  readOnly: true,
  persistent: false,
  open: async (layout, data) => {
    const env = await tempStore()
    const digest = Digest.fromBuffer(data)
    await env.store.putStream(digest, Readable.from([data]))
    const seed = await env.store.openSeed(digest, layout)
    env.opened.push(seed)
    return { storage: seed, cleanup: env.cleanup }
  },
})
