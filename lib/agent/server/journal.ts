/**
 * The agent's resume journal, per swarm download in progress:
 *
 *   <dataDir>/resume/<hex>.json    { namespace, metainfo }
 *   <dataDir>/resume/<hex>.pieces  indexes of the pieces written, 4 bytes each, appended
 *
 * The store's `downloads/<hex>.bitfield` says which pieces are durably on disk, but not which
 * namespace the blob was asked for nor its piece layout; the entry says both, so a restarted
 * agent resumes its downloads by itself, without a client asking again and even while the
 * trackers are unreachable. The bitfield is only written after an fdatasync of the data, so it
 * lags the download by as long as the disk takes to sync (easily a second at full speed); the
 * piece log is appended, without a sync, as each piece is written, and names the pieces written
 * since, which a restart checks against their SHA-1 and keeps when they match (checkpoint.ts).
 *
 * An entry is written once the metainfo is known (before the first piece) and removed when the
 * download ends, whatever the outcome, except when it ends because the agent is stopping: the
 * entries left are exactly the downloads a crash, SIGKILL or shutdown interrupted.
 */
import { type FileHandle, mkdir, open, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Digest, MetaInfo, parseNamespace } from '../../core/index.js'
import { errnoCode, ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import { atomicWriteFile } from '../../store/fsutil.js'

export interface JournalEntry {
  namespace: string
  digest: Digest
  meta: MetaInfo
}

interface JournalFile {
  v: 1
  namespace: string
  /** the bencoded .torrent, base64 */
  metainfo: string
}

const ENTRY = /^([0-9a-f]{64})\.json$/
/** atomicWriteFile's temp files (tempName()), left behind by a crash mid-write */
const TEMP = /^tmp-/

export class ResumeJournal {
  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** Creates the folder and removes temp files a crash left behind. */
  async init(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true })
      for (const name of await readdir(this.dir))
        if (TEMP.test(name)) await rm(join(this.dir, name), { force: true })
    } catch (err) {
      throw new ShoalError('IO_ERROR', `cannot initialise the resume journal in ${this.dir}`, { cause: err })
    }
  }

  async record(namespace: string, digest: Digest, meta: MetaInfo): Promise<void> {
    const body: JournalFile = { v: 1, namespace, metainfo: meta.raw.toString('base64') }
    try {
      await atomicWriteFile(this.dir, this.path(digest), Buffer.from(JSON.stringify(body)))
    } catch (err) {
      throw new ShoalError('IO_ERROR', `cannot write the resume entry for ${digest}`, { cause: err })
    }
  }

  /** Removing an absent entry is fine; a failure is logged, never thrown (it only costs a resume). */
  async remove(digest: Digest): Promise<void> {
    for (const path of [this.path(digest), this.pieceLogPath(digest)]) {
      await rm(path, { force: true }).catch((err: unknown) =>
        this.log.warn(
          { digest: digest.toString(), err: toShoalError(err).message },
          'cannot remove resume entry',
        ),
      )
    }
  }

  /** The piece log, for appending; created when absent. */
  async openPieceLog(digest: Digest): Promise<PieceLog> {
    try {
      return new PieceLog(await open(this.pieceLogPath(digest), 'a'))
    } catch (err) {
      throw new ShoalError('IO_ERROR', `cannot open the piece log of ${digest}`, { cause: err })
    }
  }

  /** The pieces the log names (each once, in order), below `pieceCount`; none without a log. */
  async readPieceLog(digest: Digest, pieceCount: number): Promise<number[]> {
    let raw: Buffer
    try {
      raw = await readFile(this.pieceLogPath(digest))
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return []
      throw new ShoalError('IO_ERROR', `cannot read the piece log of ${digest}`, { cause: err })
    }
    const seen = new Set<number>()
    // A torn last entry (a crash mid-append) is ignored.
    for (let off = 0; off + 4 <= raw.length; off += 4) {
      const i = raw.readUInt32BE(off)
      if (i < pieceCount) seen.add(i)
    }
    return [...seen].sort((a, b) => a - b)
  }

  /** Every valid entry; an unreadable or inconsistent one is removed with a warning. */
  async list(): Promise<JournalEntry[]> {
    let names: string[]
    try {
      names = await readdir(this.dir)
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return []
      throw new ShoalError('IO_ERROR', `cannot read the resume journal in ${this.dir}`, { cause: err })
    }
    const out: JournalEntry[] = []
    for (const name of names.sort()) {
      const hex = ENTRY.exec(name)?.[1]
      if (!hex) continue
      const digest = Digest.fromHex(hex)
      try {
        out.push(parseEntry(digest, await readFile(join(this.dir, name))))
      } catch (err) {
        this.log.warn(
          { digest: digest.toString(), err: toShoalError(err).message },
          'dropping an unusable resume entry',
        )
        await this.remove(digest)
      }
    }
    return out
  }

  private path(digest: Digest): string {
    return join(this.dir, `${digest.hex}.json`)
  }

  private pieceLogPath(digest: Digest): string {
    return join(this.dir, `${digest.hex}.pieces`)
  }
}

/** Appends piece indexes; never synced: it only has to outlive the process (see above). */
export class PieceLog {
  constructor(private readonly fh: FileHandle) {}

  /** One 4-byte write per piece (pieces are 256 KiB to 16 MiB: not a per-block cost). */
  async append(piece: number): Promise<void> {
    const entry = Buffer.allocUnsafe(4)
    entry.writeUInt32BE(piece, 0)
    await this.fh.write(entry)
  }

  close(): Promise<void> {
    return this.fh.close().catch(() => undefined)
  }
}

function parseEntry(digest: Digest, raw: Buffer): JournalEntry {
  const parsed = JSON.parse(raw.toString('utf8')) as Partial<JournalFile>
  if (parsed.v !== 1 || typeof parsed.namespace !== 'string' || typeof parsed.metainfo !== 'string')
    throw new ShoalError('BAD_METAINFO', 'not a version 1 resume entry')
  const meta = MetaInfo.parse(Buffer.from(parsed.metainfo, 'base64'))
  if (meta.name !== digest.hex)
    throw new ShoalError('BAD_METAINFO', `resume entry for ${digest} holds metainfo named ${meta.name}`)
  return { namespace: parseNamespace(parsed.namespace), digest, meta }
}
