/**
 * The agent's download bookkeeping against a real BlobStore, with the swarm and the trackers
 * stood in: whole-blob verification failures, retries, stalls.
 */
import { createHash, randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { Downloads, type MetaInfoSource, type SwarmEngine } from '../../lib/agent/server/downloads.js'
import { Digest, type InfoHash, MetaInfo } from '../../lib/core/index.js'
import { ShoalError } from '../../lib/errors/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { BlobStore } from '../../lib/store/index.js'
import type { DownloadStats, TorrentStorage } from '../../lib/torrent/index.js'
import { tempDir } from '../helpers/files.js'

const PIECE = 256 << 10

async function metaFor(dir: string, data: Buffer, name: string): Promise<MetaInfo> {
  const file = join(dir, `${name}.src`)
  await writeFile(file, data)
  return MetaInfo.create(file, {
    name,
    announce: 'http://127.0.0.1:1/announce',
    size: data.length,
    pieceLength: PIECE,
  })
}

/** An engine that "downloads" by writing the given bytes piece by piece, as verified pieces. */
class FakeEngine implements SwarmEngine {
  downloads = 0
  removed: string[] = []
  constructor(private readonly bytes: () => Buffer | undefined) {}
  async download(
    meta: MetaInfo,
    storage: TorrentStorage,
    opts?: { signal?: AbortSignal },
  ): Promise<DownloadStats> {
    this.downloads++
    const data = this.bytes()
    if (!data) {
      // Never makes progress: wait for the caller to give up.
      await new Promise((_, reject) =>
        opts?.signal?.addEventListener('abort', () => reject(new ShoalError('ABORTED', 'aborted'))),
      )
    }
    for (let i = 0; i < meta.pieceCount; i++) {
      if (!storage.hasPiece(i))
        await storage.writePiece(i, (data as Buffer).subarray(i * PIECE, (i + 1) * PIECE))
    }
    return {
      bytesFromOrigins: meta.length,
      bytesFromAgents: 0,
      bytesUploaded: 0,
      piecesFromOrigins: meta.pieceCount,
      piecesFromAgents: 0,
      startedAt: Date.now(),
    }
  }
  seed(): void {}
  remove(infoHash: InfoHash): void {
    this.removed.push(infoHash.hex)
  }
  stats(): DownloadStats | undefined {
    return undefined
  }
}

async function setup(t: Test, opts: { stallMs?: number } = {}) {
  const dir = await tempDir(t)
  const store = new BlobStore(join(dir, 'store'))
  await store.init()
  const data = randomBytes(3 * PIECE + 1000)
  const digest = Digest.fromBuffer(data)
  return { dir, store, data, digest, stallMs: opts.stallMs ?? 5000 }
}

t.test(
  'a blob whose pieces verify but whose sha256 does not is discarded, and a retry starts afresh',
  async (t) => {
    const { dir, store, data, digest } = await setup(t)
    const other = Buffer.from(data)
    other.writeUInt8(other.readUInt8(other.length - 1) ^ 0xff, other.length - 1)
    // Metainfo named after the real digest but built from other bytes: every piece's SHA-1 checks out.
    const badMeta = await metaFor(dir, other, digest.hex)
    const goodMeta = await metaFor(dir, data, digest.hex)
    let serve = { meta: badMeta, bytes: other }
    const tracker: MetaInfoSource = { metainfo: async () => serve.meta.raw }
    const engine = new FakeEngine(() => serve.bytes)
    const downloads = new Downloads(store, engine as never, [tracker as never], silentLogger(), 5000)

    await t.rejects(downloads.ensure('default', digest), { code: 'DIGEST_MISMATCH' })
    t.equal(await store.stat(digest), undefined, 'nothing became visible')
    t.same(engine.removed, [badMeta.infoHash.hex], 'the torrent was dropped from the engine')
    t.equal(downloads.status(digest)?.state, 'failed')

    serve = { meta: goodMeta, bytes: data }
    await downloads.ensure('default', digest)
    t.equal(engine.downloads, 2, 'the retry downloaded again')
    t.equal((await store.stat(digest))?.size, data.length, 'the retry landed the right bytes')
    const hash = createHash('sha256')
    for await (const chunk of store.createReadStream(digest)) hash.update(chunk as Buffer)
    t.equal(hash.digest('hex'), digest.hex)
    await downloads.closeAll()
  },
)

t.test(
  'metainfo that is not available yet (origin refetching) is retried, a missing blob is not',
  async (t) => {
    const { dir, store, data, digest } = await setup(t)
    const meta = await metaFor(dir, data, digest.hex)
    let calls = 0
    const tracker: MetaInfoSource = {
      metainfo: async () => {
        calls++
        if (calls < 3) throw new ShoalError('UNAVAILABLE', 'origin is still fetching the blob')
        return meta.raw
      },
    }
    const downloads = new Downloads(
      store,
      new FakeEngine(() => data) as never,
      [tracker as never],
      silentLogger(),
      10_000,
    )
    await downloads.ensure('default', digest)
    t.equal(calls, 3, 'two "unavailable" answers, then success')
    await downloads.closeAll()

    const missing = Digest.fromBuffer(Buffer.from('nope'))
    const none: MetaInfoSource = {
      metainfo: async () => {
        throw new ShoalError('BLOB_NOT_FOUND', 'no')
      },
    }
    const d2 = new Downloads(
      store,
      new FakeEngine(() => data) as never,
      [none as never],
      silentLogger(),
      10_000,
    )
    await t.rejects(d2.ensure('default', missing), {
      code: 'BLOB_NOT_FOUND',
      message: `blob not found: ${missing}`,
    })
  },
)

t.test('a download that makes no progress fails after the stall timeout, naming it', async (t) => {
  const { dir, store, data, digest } = await setup(t)
  const meta = await metaFor(dir, data, digest.hex)
  const engine = new FakeEngine(() => undefined)
  const downloads = new Downloads(
    store,
    engine as never,
    [{ metainfo: async () => meta.raw } as never],
    silentLogger(),
    300,
  )
  // The watchdog's timers are unref'd (a daemon's server keeps the loop alive); hold it here.
  const keepAlive = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(keepAlive))
  const started = Date.now()
  await t.rejects(downloads.ensure('default', digest), { code: 'TIMEOUT', message: /made no progress for/ })
  t.ok(Date.now() - started < 5000, 'gave up promptly')
  t.same(engine.removed, [meta.infoHash.hex], 'the stalled torrent was dropped')
})
