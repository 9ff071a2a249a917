/**
 * Metainfo from the trackers (the TrackerSet fails over between them). An origin that is still
 * fetching the blob from its backend answers "unavailable, retry": retry with backoff until
 * `signal` ends it (the stall deadline); a tracker that says the blob does not exist is believed
 * at once.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { type Digest, MetaInfo } from '../../core/index.js'
import { ShoalError, toShoalError } from '../../errors/index.js'
import type { Logger } from '../../log/index.js'
import type { TrackerSet } from '../../tracker/client/index.js'

export async function fetchMetaInfo(
  trackers: Pick<TrackerSet, 'metainfo'>,
  ns: string,
  digest: Digest,
  signal: AbortSignal,
  log: Logger,
): Promise<MetaInfo> {
  let delay = 250
  for (;;) {
    let e: ShoalError
    try {
      const meta = MetaInfo.parse(await trackers.metainfo(ns, digest, signal))
      if (meta.name !== digest.hex) {
        throw new ShoalError('BAD_METAINFO', `tracker served metainfo named ${meta.name} for ${digest}`)
      }
      return meta
    } catch (err) {
      e = toShoalError(err)
    }
    if (e.code === 'BLOB_NOT_FOUND' || e.code === 'NOT_FOUND')
      throw new ShoalError('BLOB_NOT_FOUND', `blob not found: ${digest}`)
    if (!(e.code === 'UNAVAILABLE' || e.code === 'TIMEOUT') || signal.aborted) throw e
    log.debug({ digest: digest.toString(), err: e.message, retryInMs: delay }, 'metainfo not available yet')
    await sleep(delay, undefined, { signal }).catch(() => undefined)
    delay = Math.min(delay * 2, 5_000)
  }
}

/** The piece layout the store opens a download or a seed with. */
export function layoutOf(meta: MetaInfo): { length: number; pieceLength: number; pieceCount: number } {
  return { length: meta.length, pieceLength: meta.pieceLength, pieceCount: meta.pieceCount }
}
