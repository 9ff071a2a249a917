/**
 * The event log's view of tag writes (docs/events.md): build-index records them because it is
 * the one that knows the old digest. A put that changed nothing is no event.
 */
import type { Digest, Tag } from '../../core/index.js'
import type { EventRecorder } from '../../events/index.js'
import type { PutResult, TagRecord } from './tags.js'

interface TagWrite {
  tag: Tag
  actor: string
}

export function recordTagPut(
  events: EventRecorder,
  w: TagWrite & { digest: Digest; ns: string },
  done: { result: PutResult; previous?: string; record: TagRecord } | { error: unknown },
): void {
  const base = {
    subject: w.tag.toString(),
    tag: w.tag.toString(),
    digest: w.digest.toString(),
    actor: w.actor,
  }
  if ('error' in done) {
    events.record({ ...base, action: 'tag.put', error: done.error, details: { ns: w.ns } })
    return
  }
  if (done.result === 'unchanged') return
  events.record({
    ...base,
    action: done.result === 'moved' ? 'tag.move' : 'tag.put',
    details: { ns: w.ns, ...(done.previous ? { from: done.previous } : {}), to: done.record.digest },
  })
}

/** `removed` undefined: a tombstone was purged (the tag itself was gone already). */
export function recordTagDelete(
  events: EventRecorder,
  w: TagWrite & { purge: boolean },
  done: { removed: TagRecord | undefined } | { error: unknown },
): void {
  const base = { action: 'tag.delete', subject: w.tag.toString(), tag: w.tag.toString(), actor: w.actor }
  if ('error' in done) events.record({ ...base, error: done.error, details: { purge: w.purge } })
  else if (done.removed)
    events.record({
      ...base,
      digest: done.removed.digest,
      details: { from: done.removed.digest, purge: w.purge },
    })
  else events.record({ ...base, details: { purge: w.purge, tombstone: 'purged' } })
}
