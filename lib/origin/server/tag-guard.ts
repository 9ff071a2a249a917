/**
 * "Do tags still point at this blob?", asked by the origin before it deletes one. Build-index
 * owns the answer (its digest → tags index, GET /digests/:digest/tags). When it cannot answer,
 * the delete is refused: a blob is never deleted on the assumption that nothing uses it.
 */
import { BuildIndexClient } from '../../build-index/client/index.js'
import type { Digest } from '../../core/index.js'
import { isShoalError, ShoalError, toShoalError } from '../../errors/index.js'

export interface TagLookup {
  /** Some of the tags pointing at `digest` (empty: none); throws when it cannot tell. */
  tagsOf(digest: Digest, signal?: AbortSignal): Promise<string[]>
}

/** Tags named in a BLOB_IN_USE answer; the operator needs one to act, not thousands. */
const SHOWN = 5

export class BuildIndexTagLookup implements TagLookup {
  private readonly client: BuildIndexClient

  constructor(address: string) {
    this.client = new BuildIndexClient(address, { timeoutMs: 10_000 })
  }

  async tagsOf(digest: Digest, signal?: AbortSignal): Promise<string[]> {
    let after: string | undefined
    do {
      const page = await this.client.tagsOf(digest, { after, limit: SHOWN, signal })
      if (page.tags.length > 0) return page.tags
      after = page.next // a page of stale pairs only: look further
    } while (after !== undefined)
    return []
  }
}

/** Throws BLOB_IN_USE when tags point at the digest, UNAVAILABLE when that cannot be told. */
export async function checkUnused(
  lookup: TagLookup,
  digest: Digest,
  where: string,
  signal?: AbortSignal,
): Promise<void> {
  let tags: string[]
  try {
    tags = await lookup.tagsOf(digest, signal)
  } catch (err) {
    if (isShoalError(err, 'ABORTED')) throw err
    const e = toShoalError(err, 'UNAVAILABLE')
    throw new ShoalError(
      'UNAVAILABLE',
      `cannot tell whether tags point at ${digest} (build-index at ${where}: ${e.message}); the blob was not deleted, retry once build-index answers`,
      { cause: err },
    )
  }
  if (tags.length === 0) return
  throw new ShoalError(
    'BLOB_IN_USE',
    `blob ${digest} is not deleted: tag ${tags[0]}${tags.length > 1 ? ` (and others)` : ''} points at it; delete the tags first (RemoveCLI remove --tag ...)`,
    { details: { tags } },
  )
}
