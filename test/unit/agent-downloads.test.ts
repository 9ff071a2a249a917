/**
 * The agent's download bookkeeping against a real BlobStore, with the swarm and the trackers
 * stood in: whole-blob verification failures, retries, stalls, and resume after a restart.
 */
import { createHash, randomBytes } from 'node:crypto'
import { type FileHandle, open, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import {
  Downloads,
  layoutOf,
  type MetaInfoSource,
  type SwarmEngine,
} from '../../lib/agent/server/downloads.js'
import { ResumeJournal } from '../../lib/agent/server/journal.js'
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

/**
 * An engine that "downloads" by writing the given bytes piece by piece, as verified pieces: the
 * missing ones, or only the first `stopAfter` of them before it stops making progress.
 */
class FakeEngine implements SwarmEngine {
  downloads = 0
  removed: string[] = []
  /** pieces written, over all downloads */
  written = 0
  constructor(
    private readonly bytes: (meta: MetaInfo) => Buffer | undefined,
    private readonly stopAfter = Number.POSITIVE_INFINITY,
  ) {}
  async download(
    meta: MetaInfo,
    storage: TorrentStorage,
    opts?: { signal?: AbortSignal },
  ): Promise<DownloadStats> {
    this.downloads++
    const data = this.bytes(meta)
    let n = 0
    for (let i = 0; data && i < meta.pieceCount && n < this.stopAfter; i++) {
      if (storage.hasPiece(i)) continue
      await storage.writePiece(i, data.subarray(i * PIECE, (i + 1) * PIECE))
      this.written++
      n++
    }
    if (!data || n === this.stopAfter) {
      // No (more) progress: wait for the caller to give up.
      await new Promise((_, reject) => {
        if (opts?.signal?.aborted) reject(new ShoalError('ABORTED', 'aborted'))
        opts?.signal?.addEventListener('abort', () => reject(new ShoalError('ABORTED', 'aborted')))
      })
    }
    return {
      bytesReceived: n * PIECE,
      peers: 1,
      bytesFromOrigins: n * PIECE,
      bytesFromAgents: 0,
      bytesUploaded: 0,
      piecesFromOrigins: n,
      piecesFromAgents: 0,
      startedAt: Date.now(),
      bytesByZone: {},
      bytesCrossZone: 0,
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
    const journal = new ResumeJournal(join(dir, 'resume'), silentLogger())
    await journal.init()
    const downloads = new Downloads({
      store,
      engine,
      trackers: tracker,
      logger: silentLogger(),
      stallMs: 5000,
      journal,
    })

    await t.rejects(downloads.ensure('default', digest), { code: 'DIGEST_MISMATCH' })
    t.same(await journal.list(), [], 'a download that failed for good leaves no resume entry')
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
    const downloads = new Downloads({
      store,
      engine: new FakeEngine(() => data),
      trackers: tracker,
      logger: silentLogger(),
      stallMs: 10_000,
    })
    await downloads.ensure('default', digest)
    t.equal(calls, 3, 'two "unavailable" answers, then success')
    await downloads.closeAll()

    const missing = Digest.fromBuffer(Buffer.from('nope'))
    const none: MetaInfoSource = {
      metainfo: async () => {
        throw new ShoalError('BLOB_NOT_FOUND', 'no')
      },
    }
    const d2 = new Downloads({
      store,
      engine: new FakeEngine(() => data),
      trackers: none,
      logger: silentLogger(),
      stallMs: 10_000,
    })
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
  const downloads = new Downloads({
    store,
    engine,
    trackers: { metainfo: async () => meta.raw },
    logger: silentLogger(),
    stallMs: 300,
  })
  // The watchdog's timers are unref'd (a daemon's server keeps the loop alive); hold it here.
  const keepAlive = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(keepAlive))
  const started = Date.now()
  await t.rejects(downloads.ensure('default', digest), { code: 'TIMEOUT', message: /made no progress for/ })
  t.ok(Date.now() - started < 5000, 'gave up promptly')
  t.same(engine.removed, [meta.infoHash.hex], 'the stalled torrent was dropped')
})

t.test(
  'a download interrupted by a stop resumes by itself at the next start, from its bitfield; a pull joins it',
  async (t) => {
    const { dir, data, digest } = await setup(t)
    const meta = await metaFor(dir, data, digest.hex)
    const root = join(dir, 'store')
    let metainfoCalls = 0
    const tracker: MetaInfoSource = {
      metainfo: async () => {
        metainfoCalls++
        return meta.raw
      },
    }
    const open = async (engine: FakeEngine) => {
      const store = new BlobStore(root)
      await store.init()
      const journal = new ResumeJournal(join(dir, 'resume'), silentLogger())
      await journal.init()
      const downloads = new Downloads({
        store,
        engine,
        trackers: tracker,
        logger: silentLogger(),
        stallMs: 10_000,
        journal,
      })
      return { store, journal, downloads }
    }

    // First life: two of the four pieces, then no progress until the agent stops.
    const halfway = new FakeEngine(() => data, 2)
    const first = await open(halfway)
    const pull = first.downloads.ensure('ns-1', digest)
    const failed = t.rejects(pull, { code: 'ABORTED' }, 'the pull in flight ends when the agent stops')
    for (let i = 0; i < 500 && halfway.written < 2; i++) await new Promise((r) => setTimeout(r, 5))
    await first.downloads.stop()
    await failed
    const entries = await first.journal.list()
    t.same(
      entries.map((e) => [e.namespace, e.digest.hex]),
      [['ns-1', digest.hex]],
      'the interrupted download stays journaled, with its namespace',
    )

    // Second life: resume() restarts it without a client; a pull arriving meanwhile joins it.
    const engine = new FakeEngine(() => data)
    const second = await open(engine)
    t.equal(await second.downloads.resume(), 1, 'one download resumed')
    await second.downloads.ensure('ns-1', digest)
    t.equal(engine.downloads, 1, 'the pull joined the resumed download instead of starting another')
    t.equal(engine.written, 2, 'only the two missing pieces were fetched again')
    t.equal(metainfoCalls, 1, 'the resumed download used the journaled metainfo, not the tracker')
    const status = second.downloads.status(digest)
    t.match(status, { state: 'done', resumedPieces: 2, piecesDone: 4, bytesFromOrigins: 2 * PIECE })
    t.same(await second.journal.list(), [], 'the entry is gone once the blob is verified')
    const hash = createHash('sha256')
    for await (const chunk of second.store.createReadStream(digest)) hash.update(chunk as Buffer)
    t.equal(hash.digest('hex'), digest.hex, 'the resumed blob is byte for byte right')
    await second.downloads.closeAll()

    const third = await open(new FakeEngine(() => data))
    t.equal(await third.downloads.resume(), 0, 'nothing left to resume')
  },
)

t.test(
  'the journal drops entries it cannot use; a blob already cached is not downloaded again',
  async (t) => {
    const { dir, store, data, digest } = await setup(t)
    const meta = await metaFor(dir, data, digest.hex)
    const journal = new ResumeJournal(join(dir, 'resume'), silentLogger())
    await journal.init()
    const other = Digest.fromBuffer(Buffer.from('other'))
    await writeFile(
      join(journal.dir, `${other.hex}.json`),
      '{"v":1,"namespace":"default","metainfo":"bm9wZQ=="}',
    )
    await journal.record('default', Digest.fromBuffer(Buffer.from('x')), meta) // named for another digest
    await writeFile(join(journal.dir, 'tmp-1-abc'), 'half-written')
    t.same(await journal.list(), [], 'garbage and mismatched entries are not resumed')
    await journal.init()
    t.same(await readdir(journal.dir), [], '...and are removed, with stale temp files')

    await journal.record('default', digest, meta)
    await store.putStream(digest, Readable.from([data]))
    const engine = new FakeEngine(() => data)
    const downloads = new Downloads({
      store,
      engine,
      trackers: { metainfo: async () => meta.raw },
      logger: silentLogger(),
      stallMs: 5000,
      journal,
    })
    t.equal(await downloads.resume(), 0)
    t.equal(engine.downloads, 0, 'a blob that made it into the cache before the crash is not fetched again')
    t.same(await journal.list(), [])
  },
)

t.test(
  'after a crash, pieces written after the last bitfield checkpoint are kept when their SHA-1 matches',
  async (t) => {
    const { dir, data, digest } = await setup(t)
    const meta = await metaFor(dir, data, digest.hex)
    const root = join(dir, 'store')
    // First life, by hand: pieces 0 and 1 checkpointed; 2 and 3 written after the checkpoint,
    // and 3's bytes torn on disk; the store's piece log names all four. Then the process "dies":
    // nothing is closed or flushed.
    const store1 = new BlobStore(root, { bitfieldFlushMs: 3_600_000, checkpointsPerBlob: 0 })
    await store1.init()
    const file1 = await store1.openDownload(digest, layoutOf(meta))
    t.teardown(() => file1.discard().catch(() => undefined))
    const journal = new ResumeJournal(join(dir, 'resume'), silentLogger())
    await journal.init()
    await journal.record('default', digest, meta)
    for (const i of [0, 1, 2, 3]) {
      await file1.writePiece(i, data.subarray(i * PIECE, (i + 1) * PIECE))
      if (i === 1) await file1.flush()
    }
    const raw = await open(join(root, 'downloads', digest.hex), 'r+')
    await raw.write(Buffer.from('torn'), 0, 4, 3 * PIECE + 10)
    await raw.close()

    const store2 = new BlobStore(root)
    await store2.init()
    const engine = new FakeEngine(() => data)
    const downloads = new Downloads({
      store: store2,
      engine,
      trackers: { metainfo: async () => meta.raw },
      logger: silentLogger(),
      stallMs: 5000,
      journal,
    })
    t.equal(await downloads.resume(), 1)
    await downloads.ensure('default', digest)
    t.match(
      downloads.status(digest),
      { state: 'done', resumedPieces: 3 },
      'pieces 0-1 from the bitfield, 2 from the log',
    )
    t.equal(engine.written, 1, 'only the torn piece was fetched again')
    const hash = createHash('sha256')
    for await (const chunk of store2.createReadStream(digest)) hash.update(chunk as Buffer)
    t.equal(hash.digest('hex'), digest.hex, 'and the blob is right')
    await downloads.closeAll()
  },
)

/**
 * Makes the data file of every download opened from `store` fail its writes, after `okWrites`
 * successful ones, the way a full disk does: at the file handle, with the errno error fs gives.
 */
function fillDiskAfter(store: BlobStore, okWrites: number, code = 'ENOSPC'): void {
  const openDownload = store.openDownload.bind(store)
  store.openDownload = async (digest, layout) => {
    const file = await openDownload(digest, layout)
    const fh = (file as unknown as { fh: FileHandle }).fh
    const write = fh.write.bind(fh) as (...args: unknown[]) => Promise<unknown>
    let n = 0
    Object.assign(fh, {
      write: async (...args: unknown[]) => {
        if (n++ < okWrites) return write(...args)
        throw Object.assign(new Error(`${code}: no space left on device, write`), {
          code,
          errno: -28,
          syscall: 'write',
        })
      },
    })
    return file
  }
}

async function filesIn(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort()
}

t.test(
  'a full disk during a download fails it naming the file and the free space, and releases the partial',
  async (t) => {
    const { dir, store, data, digest } = await setup(t)
    const meta = await metaFor(dir, data, digest.hex)
    const journal = new ResumeJournal(join(dir, 'resume'), silentLogger())
    await journal.init()
    const opts = {
      trackers: { metainfo: async () => meta.raw },
      logger: silentLogger(),
      stallMs: 5000,
      journal,
    }
    fillDiskAfter(store, 1)
    const engine = new FakeEngine(() => data)
    const downloads = new Downloads({ store, engine, ...opts })
    const dataPath = join(store.root, 'downloads', digest.hex)
    await t.rejects(downloads.ensure('default', digest), {
      code: 'INSUFFICIENT_STORAGE',
      message: new RegExp(
        `^cannot write piece 1 of ${digest}: the disk is full at ${dataPath} \\(ENOSPC\\): .+ free there; ` +
          '.*the partial download was deleted: 256\\.0 KiB released',
      ),
    })
    t.match(downloads.status(digest), { state: 'failed', error: /disk is full/ }, 'the API shows why')
    t.same(await filesIn(join(store.root, 'downloads')), [], 'the partial data and bitfield are gone')
    t.same(await journal.list(), [], 'and its resume entry')
    t.same(await filesIn(journal.dir), [], 'piece log included')

    // Space freed (a store that writes normally): the next pull succeeds, from scratch.
    const store2 = new BlobStore(store.root)
    await store2.init()
    const downloads2 = new Downloads({ store: store2, engine, ...opts })
    await downloads2.ensure('default', digest)
    t.equal((await store2.stat(digest))?.size, data.length, 'the retry landed the blob')
    await downloads2.closeAll()
  },
)

t.test('EDQUOT (a quota) is a full disk too; other downloads carry on', async (t) => {
  const { dir, store, data, digest } = await setup(t)
  const meta = await metaFor(dir, data, digest.hex)
  const otherData = randomBytes(2 * PIECE)
  const other = Digest.fromBuffer(otherData)
  const otherMeta = await metaFor(dir, otherData, other.hex)
  const openDownload = store.openDownload.bind(store)
  // Only the first blob's file hits the quota.
  fillDiskAfter(store, 0, 'EDQUOT')
  const failing = store.openDownload
  store.openDownload = (d, layout) => (d.equals(digest) ? failing(d, layout) : openDownload(d, layout))
  const downloads = new Downloads({
    store,
    engine: new FakeEngine((m) => (m.infoHash.equals(meta.infoHash) ? data : otherData)),
    trackers: { metainfo: async (_ns, d) => (d.equals(digest) ? meta.raw : otherMeta.raw) },
    logger: silentLogger(),
    stallMs: 5000,
  })
  const [a, b] = await Promise.allSettled([
    downloads.ensure('default', digest),
    downloads.ensure('default', other),
  ])
  t.match(a, {
    status: 'rejected',
    reason: { code: 'INSUFFICIENT_STORAGE', message: /the disk quota is exhausted at .* \(EDQUOT\)/ },
  })
  t.equal(b.status, 'fulfilled', 'the other download finished')
  t.equal((await store.stat(other))?.size, otherData.length)
  await downloads.closeAll()
})

t.test('a download that cannot fit above minFreeBytes is refused before anything is written', async (t) => {
  const { dir, store, data, digest } = await setup(t)
  const meta = await metaFor(dir, data, digest.hex)
  const journal = new ResumeJournal(join(dir, 'resume'), silentLogger())
  await journal.init()
  const engine = new FakeEngine(() => data)
  // A reserve above what is free: whatever else happens on this disk, the blob cannot fit.
  const reserve = (await store.freeBytes()) + (1 << 30)
  const opts = {
    engine,
    trackers: { metainfo: async () => meta.raw },
    logger: silentLogger(),
    stallMs: 5000,
    journal,
  }
  const downloads = new Downloads({ store, ...opts, minFreeBytes: reserve })
  await t.rejects(downloads.ensure('default', digest), {
    code: 'INSUFFICIENT_STORAGE',
    message: new RegExp(
      `^not enough disk space to download ${digest} into ${store.root}: it needs 769\\.0 KiB .*` +
        'must stay free \\(minFreeBytes\\); .* is free',
    ),
    details: { path: store.root, neededBytes: data.length, minFreeBytes: reserve },
  })
  t.equal(engine.downloads, 0, 'the swarm was not asked')
  t.same(await filesIn(join(store.root, 'downloads')), [], 'no sparse file was created')
  t.same(await filesIn(journal.dir), [], 'no resume entry was written')

  const roomy = new Downloads({ store, ...opts, minFreeBytes: 0 })
  await roomy.ensure('default', digest)
  t.equal((await store.stat(digest))?.size, data.length, 'with room, the same pull succeeds')
  await roomy.closeAll()
})

t.test('deleting a blob stops its download and deletes its partial data, at any stage', async (t) => {
  const { dir, store, data, digest } = await setup(t)
  const meta = await metaFor(dir, data, digest.hex)
  const journal = new ResumeJournal(join(dir, 'resume'), silentLogger())
  await journal.init()
  const engine = new FakeEngine(() => data, 2)
  const downloads = new Downloads({
    store,
    engine,
    trackers: { metainfo: async () => meta.raw },
    logger: silentLogger(),
    stallMs: 60_000,
    journal,
  })
  const pull = downloads.ensure('default', digest)
  const failed = t.rejects(pull, { code: 'ABORTED', message: /the blob was deleted/ }, 'the pull is told why')
  for (let i = 0; i < 500 && engine.written < 2; i++) await new Promise((r) => setTimeout(r, 5))
  t.equal(engine.written, 2, 'two pieces on disk')
  const released = await Promise.race([
    downloads.release(digest, undefined),
    new Promise((r) => setTimeout(() => r('release hung'), 5000)),
  ])
  await failed
  t.equal(released, 2 * PIECE, 'the partial bytes were released')
  t.same(await filesIn(join(store.root, 'downloads')), [], 'no partial data or bitfield left')
  t.same(await filesIn(journal.dir), [], 'no resume entry left')

  // A partial no download holds (an older agent's leftovers): deleted too.
  const file = await store.openDownload(digest, layoutOf(meta))
  await file.writePiece(0, data.subarray(0, PIECE))
  await file.close()
  t.equal(await downloads.release(digest, undefined), PIECE)
  t.same(await filesIn(join(store.root, 'downloads')), [])
})

t.test('a restart deletes partial downloads without a resume entry and resumes the others', async (t) => {
  const { dir, store, data, digest } = await setup(t)
  const meta = await metaFor(dir, data, digest.hex)
  const orphanData = randomBytes(2 * PIECE)
  const orphan = Digest.fromBuffer(orphanData)
  const orphanMeta = await metaFor(dir, orphanData, orphan.hex)
  const journal = new ResumeJournal(join(dir, 'resume'), silentLogger())
  await journal.init()
  // Left by an earlier life: one journaled download, one partial that failed (no entry).
  await journal.record('default', digest, meta)
  for (const [d, m, bytes] of [
    [digest, meta, data],
    [orphan, orphanMeta, orphanData],
  ] as const) {
    const file = await store.openDownload(d, layoutOf(m))
    await file.writePiece(0, bytes.subarray(0, PIECE))
    await file.close()
  }
  const engine = new FakeEngine(() => data)
  const downloads = new Downloads({
    store,
    engine,
    trackers: { metainfo: async () => meta.raw },
    logger: silentLogger(),
    stallMs: 5000,
    journal,
  })
  t.equal(await downloads.resume(), 1, 'the journaled download resumes')
  t.notOk(
    (await filesIn(join(store.root, 'downloads'))).some((n) => n.startsWith(orphan.hex)),
    'the orphan partial is gone',
  )
  await downloads.ensure('default', digest)
  t.match(downloads.status(digest), { state: 'done', resumedPieces: 1 }, 'its piece on disk was kept')
  await downloads.closeAll()
})
