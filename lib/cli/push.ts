/**
 * PushCLI push: (wait for the producer's flag file,) hash the file, build its tag, refuse an
 * immutable version that already names other content, upload through the proxy (which skips a
 * digest already stored: dedupe), then put tag → digest. `--timeout` is seconds without
 * progress: every chunk hashed or uploaded restarts the clock; waiting for a flag does not.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename, dirname, resolve } from 'node:path'
import { pipeline as pipe, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { DEFAULT_NAMESPACE, Digest, Tag } from '../core/index.js'
import { errnoCode, ShoalError } from '../errors/index.js'
import { ProxyClient } from '../proxy/client/index.js'
import { clientTimeoutMs } from './common.js'
import { DEFAULT_FLAG_SUFFIX, flagPath, waitForFlag } from './flag-file.js'
import type { ProgressInfo } from './output.js'
import { type Progress, withProgressTimeout } from './watchdog.js'

/** What is stored with the tag (the lead wires it into putTag's `meta`). */
export interface PushMeta {
  type?: 'file' | 'directory'
  desc?: string
  mode?: number
  mtimeMs?: number
}

export interface PushOptions {
  srcPath: string
  srcHost: string
  tag?: string
  version?: string
  dstHost: string
  namespace?: string
  /** Seconds without progress before the push fails with TIMEOUT; 0 or undefined: none. */
  timeoutSeconds?: number
  /** `--has-flag F`: wait for `srcPath<suffix>` before reading the file. */
  hasFlag?: boolean
  flagSuffix?: string
  /** `--res-desc` and the like; push adds the file's mode and mtime. */
  meta?: PushMeta
  onProgress?: (p: ProgressInfo) => void
  signal?: AbortSignal
}

export interface PushResult {
  tag: Tag
  digest: Digest
  size: number
  uploaded: boolean
  seconds: number
  /** What goes with the tag: type, desc, mode, mtimeMs. */
  meta: PushMeta
}

export async function push(opts: PushOptions): Promise<PushResult> {
  const started = Date.now()
  const path = resolve(opts.srcPath)
  const tag = opts.tag
    ? withVersion(Tag.parse(opts.tag), opts.version)
    : Tag.from({
        srcHost: opts.srcHost,
        srcDir: dirname(path),
        fileName: basename(path),
        version: opts.version,
      })
  const r = await withProgressTimeout(
    `push of ${opts.srcPath}`,
    opts.timeoutSeconds,
    async (signal, progress) => {
      if (opts.hasFlag) {
        const suffix = opts.flagSuffix ?? DEFAULT_FLAG_SUFFIX
        opts.onProgress?.({ bytes: 0, phase: 'waiting for flag' })
        // A timeout here names the flag file (waitForFlag's TIMEOUT, kept by the watchdog).
        await waitForFlag(path, { suffix, signal })
      }
      const st = await checkFile(opts.srcPath, path, opts.hasFlag ? opts.flagSuffix : undefined)
      const meta: PushMeta = { ...opts.meta, type: 'file', mode: st.mode & 0o7777, mtimeMs: st.mtimeMs }
      return upload(path, tag, meta, opts, signal, progress)
    },
    opts.signal,
  )
  return { ...r, seconds: (Date.now() - started) / 1000 }
}

async function checkFile(shown: string, path: string, flagSuffix: string | undefined) {
  let st: Awaited<ReturnType<typeof stat>>
  try {
    st = await stat(path)
  } catch (err) {
    const flag = flagSuffix !== undefined ? ` (its flag ${flagPath(shown, flagSuffix)} exists)` : ''
    const why = errnoCode(err) === 'ENOENT' ? `no such file${flag}` : (errnoCode(err) ?? 'cannot read it')
    throw new ShoalError('INVALID_PATH', `cannot push ${shown}: ${why}`)
  }
  if (st.isDirectory())
    throw new ShoalError(
      'INVALID_PATH',
      `cannot push ${shown}: it is a directory; push it with --res-type directory`,
    )
  if (!st.isFile()) throw new ShoalError('INVALID_PATH', `cannot push ${shown}: not a regular file`)
  return st
}

async function upload(
  path: string,
  tag: Tag,
  meta: PushMeta,
  opts: PushOptions,
  signal: AbortSignal,
  progress: Progress,
): Promise<Omit<PushResult, 'seconds'>> {
  const ns = opts.namespace ?? DEFAULT_NAMESPACE
  const { digest, size } = await hashFile(path, signal, progress, opts.onProgress)
  // The client's own request timeout stays long: the watchdog is what cuts a stalled push.
  const proxy = new ProxyClient(opts.dstHost, { timeoutMs: clientTimeoutMs(opts.timeoutSeconds, 30_000) })
  await refuseImmutableConflict(proxy, tag, digest, signal)
  progress.touch()
  // No HEAD first: the proxy's PUT finds a stored blob itself (the owner's upload start says
  // so) and answers before reading the body, so a push asks the cluster once, not twice.
  const body = counter(size, 'uploading', progress, opts.onProgress)
  // A read error destroys `body` (so the upload fails with it); an early answer from the proxy
  // (blob already stored) destroys it too, which ends this pipeline: nothing to report then.
  pipe(createReadStream(path, { highWaterMark: 1 << 20 }), body, () => {})
  const result = await proxy.pushBlob(ns, digest, body, size, signal)
  progress.touch()
  const uploaded = !result.existed
  await proxy.putTag(tag, digest, { signal, meta })
  return { tag, digest, size, uploaded, meta }
}

/**
 * An immutable version (anything but `latest`) that already points at other content is
 * refused before a byte is uploaded: the upload would only be thrown away by the tag write.
 */
export async function refuseImmutableConflict(
  proxy: ProxyClient,
  tag: Tag,
  digest: Digest,
  signal: AbortSignal,
): Promise<void> {
  if (tag.isLatest) return
  const existing = (await proxy.tagInfo(tag, signal))?.digest
  if (existing === undefined || existing.equals(digest)) return
  throw new ShoalError(
    'TAG_CONFLICT',
    `${tag} already points at ${existing}, not at this content (${digest}); version ${tag.version} is immutable: push under a new --version (nothing was uploaded)`,
    { details: { tag: tag.toString(), existing: existing.toString(), digest: digest.toString() } },
  )
}

/** sha256 of the file, touching the watchdog per chunk so a long hash is progress too. */
async function hashFile(
  path: string,
  signal: AbortSignal,
  progress: Progress,
  onProgress: ((p: ProgressInfo) => void) | undefined,
): Promise<{ digest: Digest; size: number }> {
  const total = (await stat(path)).size
  const hash = createHash('sha256')
  let size = 0
  await pipeline(
    createReadStream(path, { highWaterMark: 1 << 20 }),
    async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) {
        hash.update(chunk)
        size += chunk.length
        progress.touch()
        onProgress?.({ bytes: size, total, phase: 'hashing' })
      }
    },
    { signal },
  )
  return { digest: Digest.fromHash(hash), size }
}

/** Passes bytes through, touching the watchdog and reporting them as they go to the proxy. */
function counter(
  total: number,
  phase: string,
  progress: Progress,
  onProgress: ((p: ProgressInfo) => void) | undefined,
): Transform {
  let bytes = 0
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length
      progress.touch()
      onProgress?.({ bytes, total, phase })
      cb(null, chunk)
    },
  })
}

function withVersion(tag: Tag, version: string | undefined): Tag {
  return version ? tag.withVersion(version) : tag
}
