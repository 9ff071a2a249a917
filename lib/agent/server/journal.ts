/**
 * The agent's resume journal: `<dataDir>/resume/<hex>.json` ({ namespace, metainfo }) per swarm
 * download in progress.
 *
 * The store keeps a download's pieces and says which survived (its bitfield and piece log, see
 * lib/store/piece-file.ts), but not which namespace the blob was asked for nor its metainfo; the
 * entry says both, so a restarted agent resumes its downloads by itself, without a client asking
 * again and even while the trackers are unreachable.
 *
 * An entry is written once the metainfo is known (before the first piece) and removed when the
 * download ends, whatever the outcome, except when it ends because the agent is stopping: the
 * entries left are exactly the downloads a crash, SIGKILL or shutdown interrupted.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
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
/**
 * atomicWriteFile's temp files (tempName()), left behind by a crash mid-write, and piece logs of
 * agents from before the piece log moved into the store.
 */
const STALE = /^tmp-|\.pieces$/

export class ResumeJournal {
  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** Creates the folder and removes the stale files (STALE) a crash or an upgrade left behind. */
  async init(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true })
      for (const name of await readdir(this.dir))
        if (STALE.test(name)) await rm(join(this.dir, name), { force: true })
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
    await rm(this.path(digest), { force: true }).catch((err: unknown) =>
      this.log.warn(
        { digest: digest.toString(), err: toShoalError(err).message },
        'cannot remove resume entry',
      ),
    )
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
