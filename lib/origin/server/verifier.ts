/**
 * Re-verification of a blob an agent got a bad piece of (POST .../verify, relayed by the
 * tracker). A cache is trusted once its sha256 matched at commit, but disks rot and hands slip:
 * the origin re-hashes its copy, and when it is corrupt stops seeding it, deletes it and
 * restores it from the backend (which verifies the backend's copy on the way in, and refuses the
 * blob when that is corrupt too).
 *
 * Re-hashing reads the whole blob, so a hostile or confused client must not be able to keep an
 * origin doing it: a blob is verified at most once per `intervalMs` (reports meanwhile share the
 * last verdict, and concurrent reports one run), and at most MAX_RUNNING blobs at once.
 */
import { type Digest, digestFile } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { Counter } from '../../metrics/index.js'
import type { BlobStore } from '../../store/index.js'
import type { VerifyReport, VerifyResult } from '../client/index.js'
import type { Seeds } from './seeder.js'

export type { VerifyReport, VerifyResult }

export interface VerifierHost {
  store: BlobStore
  seeds: Seeds
  log: Logger
  /** shoal_origin_corrupt_blobs_total{source}, shoal_origin_verifications_total{result}. */
  metrics: { corrupt: Counter; verifications: Counter }
  /** Where the blob is (BlobService.locate: throws a held BLOB_CORRUPT). */
  locate(ns: string, digest: Digest): Promise<{ state: 'cached' | 'pending' } | undefined>
  /** Fetches the blob from the backend into the cache and seeds it; rejects with why not. */
  restore(ns: string, digest: Digest): Promise<void>
}

/** Blobs re-hashed at the same time; more reports get UNAVAILABLE (the agent retries anyway). */
const MAX_RUNNING = 2
/** Verdicts remembered at most (the oldest dropped first). */
const MAX_VERDICTS = 1000

export class BlobVerifier {
  private readonly verdicts = new Map<string, { at: number; result: Promise<VerifyResult> }>()
  private running = 0

  constructor(
    private readonly host: VerifierHost,
    private readonly intervalMs: number,
  ) {}

  verify(ns: string, digest: Digest, report: VerifyReport): Promise<VerifyResult> {
    const now = Date.now()
    const last = this.verdicts.get(digest.hex)
    if (last && now - last.at < this.intervalMs) return last.result
    if (this.running >= MAX_RUNNING) {
      return Promise.reject(
        new ShoalError('UNAVAILABLE', `the origin is verifying ${this.running} other blobs; retry shortly`),
      )
    }
    const result = this.run(ns, digest, report)
    result.catch(() => undefined) // held for later reports; each caller sees the rejection
    this.verdicts.delete(digest.hex)
    this.verdicts.set(digest.hex, { at: now, result })
    for (const [hex, v] of this.verdicts) {
      if (this.verdicts.size <= MAX_VERDICTS && now - v.at < this.intervalMs) break
      this.verdicts.delete(hex)
    }
    return result
  }

  /** The blob was deleted: a report about a new copy is verified afresh. */
  forget(hex: string): void {
    this.verdicts.delete(hex)
  }

  private async run(ns: string, digest: Digest, report: VerifyReport): Promise<VerifyResult> {
    const { store, seeds, log, metrics } = this.host
    const fields = { ns, digest: digest.toString(), piece: report.piece, reporter: report.reporter }
    this.running++
    try {
      if (!(await store.stat(digest))) {
        // Not cached (yet): nothing to re-hash; locate() starts a verified fetch when needed.
        const where = await this.host.locate(ns, digest)
        if (!where) throw new ShoalError('BLOB_NOT_FOUND', `blob ${digest} is not stored in namespace ${ns}`)
        metrics.verifications.inc({ result: where.state === 'pending' ? 'restoring' : 'ok' })
        return where.state === 'pending'
          ? result(digest, 'restoring', 'the origin is fetching the blob from its backend')
          : result(digest, 'ok', 'the origin holds an intact copy')
      }
      const actual = (await digestFile(store.blobPath(digest))).digest
      if (actual.equals(digest)) {
        metrics.verifications.inc({ result: 'ok' })
        log.info(fields, 'a bad piece was reported, but the cached copy is intact')
        return result(digest, 'ok', 'the origin re-verified its copy: it is intact')
      }
      metrics.corrupt.inc({ source: 'cache' })
      log.error(
        { ...fields, actual: actual.toString() },
        'cached copy is corrupt: dropping it and restoring it from the backend',
      )
      await seeds.remove(digest)
      await store.delete(digest)
      try {
        await this.host.restore(ns, digest)
      } catch (err) {
        metrics.verifications.inc({
          result: (err as ShoalError).code === 'BLOB_CORRUPT' ? 'corrupt' : 'error',
        })
        throw err
      }
      metrics.verifications.inc({ result: 'restored' })
      log.info(fields, 'corrupt cached copy restored from the backend')
      return result(digest, 'restored', 'the origin restored its corrupt copy from the backend')
    } finally {
      this.running--
    }
  }
}

function result(digest: Digest, state: VerifyResult['state'], message: string): VerifyResult {
  return { digest: digest.toString(), state, message }
}
