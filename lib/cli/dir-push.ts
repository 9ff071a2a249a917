/**
 * PushCLI push --res-type directory: hash the tree into a manifest, push every distinct file
 * content the cluster does not hold yet, then the manifest (a blob of its own), then tag →
 * manifest. The proxy answers `existed` for a stored digest without reading the body, so a daily
 * version that changed 3 files of 1,000 uploads 3 files (and asks about the other 997).
 */
import { setMaxListeners } from 'node:events'
import { createReadStream } from 'node:fs'
import { resolve } from 'node:path'
import { Readable, Transform } from 'node:stream'
import { DEFAULT_NAMESPACE, Digest, type Tag, type TagMeta } from '../core/index.js'
import { isShoalError } from '../errors/index.js'
import { ProxyClient } from '../proxy/client/index.js'
import type { FetchProgress } from './fetch.js'
import { DEFAULT_FLAG_SUFFIX, waitForFlag } from './flag-file.js'
import { buildManifest, eachLimit, encodeManifest, type ManifestEntry } from './manifest.js'
import { refuseImmutableConflict } from './push.js'
import { withProgressTimeout } from './watchdog.js'

/** Byte progress (FetchProgress, phase 'copy') with the file counts of a tree. */
export interface DirProgress extends FetchProgress {
  step: 'hash' | 'upload' | 'fetch'
  filesDone: number
  files: number
}

export interface DirPushOptions {
  /** The folder to push. */
  srcPath: string
  /** Built by the caller (from --tag or srcHost/srcDir/folder name, and --version). */
  tag: Tag
  /** The proxy. */
  dstHost: string
  namespace?: string
  /** Seconds without progress (0 or undefined: none); waiting for the flag counts as no progress. */
  timeoutSeconds?: number
  /** Wait for `<srcPath><suffix>` before reading the folder. */
  hasFlag?: boolean
  flag?: { suffix?: string }
  /** Stored with the tag (`--res-desc`); the type is set to directory. */
  meta?: TagMeta
  /** Files hashed and blobs pushed at once (default 8). */
  concurrency?: number
  onProgress?: (p: DirProgress) => void
  signal?: AbortSignal
}

export interface DirPushResult {
  tag: Tag
  /** The manifest's digest: what the tag points at. */
  digest: Digest
  /** Bytes of all files in the tree. */
  size: number
  files: number
  /** Distinct file contents the cluster did not have (uploaded by this push), and their bytes. */
  newFiles: number
  newBytes: number
  /** Anything uploaded at all (a file or the manifest). */
  uploaded: boolean
  seconds: number
}

/** Attempts of one blob push that collides with another client's upload of the same blob. */
const IN_PROGRESS_RETRIES = 20
/** Attempts of one blob push whose connection was refused or reset. */
const TRANSPORT_RETRIES = 3
const RETRY_WAIT_MS = 250
/** A push refused with 429 (the proxy's rate limit) is sent again after Retry-After, this often. */
const RATE_LIMIT_RETRIES = 60

/** The wait a 429 asks for (details.retryAfterSeconds, lib/http/rate-limit.ts), 1 to 60 s. */
function retryAfterMs(err: unknown): number {
  const s = (err as { details?: { retryAfterSeconds?: unknown } }).details?.retryAfterSeconds
  return typeof s === 'number' && Number.isFinite(s) ? Math.min(60, Math.max(1, s)) * 1000 : 1000
}

export async function pushDirectory(opts: DirPushOptions): Promise<DirPushResult> {
  const started = Date.now()
  const root = resolve(opts.srcPath)
  const ns = opts.namespace ?? DEFAULT_NAMESPACE
  const concurrency = opts.concurrency ?? 8
  return withProgressTimeout(
    `push of ${opts.srcPath}`,
    opts.timeoutSeconds,
    async (signal, progress) => {
      // Every request in flight listens on this one signal.
      setMaxListeners(0, signal)
      if (opts.hasFlag) await waitForFlag(root, { suffix: opts.flag?.suffix ?? DEFAULT_FLAG_SUFFIX, signal })
      const manifest = await buildManifest(root, {
        signal,
        concurrency,
        onProgress: (p) => {
          progress.touch()
          opts.onProgress?.({ phase: 'copy', step: 'hash', ...p })
        },
      })
      // The per-request deadline is the watchdog's business; this only bounds a silent proxy.
      const proxy = new ProxyClient(opts.dstHost, { timeoutMs: requestTimeoutMs(opts.timeoutSeconds) })
      const body = encodeManifest(manifest)
      const digest = Digest.fromBuffer(body)
      // Before any file is uploaded, as for a file: an immutable version keeps its content.
      await refuseImmutableConflict(proxy, opts.tag, digest, signal)
      const files = manifest.entries.filter((e) => e.type === 'file')
      const size = files.reduce((n, e) => n + e.size, 0)
      const distinct = distinctContents(files)
      let newFiles = 0
      let newBytes = 0
      let filesDone = 0
      let bytes = 0
      await eachLimit([...distinct.values()], concurrency, async (e) => {
        const digest = Digest.parse(e.digest as string)
        const existed = await pushOne(proxy, ns, digest, e.size, signal, () =>
          counted(createReadStream(`${root}/${e.path}`, { highWaterMark: 1 << 20 }), (n) => {
            bytes += n
            progress.touch()
            report()
          }),
        )
        if (!existed) {
          newFiles++
          newBytes += e.size
        } else bytes += e.size
        filesDone++
        progress.touch()
        report()
      })
      function report() {
        opts.onProgress?.({
          phase: 'copy',
          step: 'upload',
          bytes,
          total: size,
          filesDone,
          files: distinct.size,
        })
      }
      const manifestExisted = await pushOne(proxy, ns, digest, body.length, signal, () =>
        Readable.from([body]),
      )
      progress.touch()
      await proxy.putTag(opts.tag, digest, { signal, meta: { ...opts.meta, type: 'directory' } })
      return {
        tag: opts.tag,
        digest,
        size,
        files: files.length,
        newFiles,
        newBytes,
        uploaded: newFiles > 0 || !manifestExisted,
        seconds: (Date.now() - started) / 1000,
      }
    },
    opts.signal,
  )
}

/** One entry per digest: a content shared by several files is pushed once. */
function distinctContents(files: ManifestEntry[]): Map<string, ManifestEntry> {
  const out = new Map<string, ManifestEntry>()
  for (const e of files) if (!out.has(e.digest as string)) out.set(e.digest as string, e)
  return out
}

/** Pushes one blob; true when the cluster had it already (nothing was read from `open()`). */
async function pushOne(
  proxy: ProxyClient,
  ns: string,
  digest: Digest,
  size: number,
  signal: AbortSignal,
  open: () => Readable,
): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await proxy.pushBlob(ns, digest, open(), size, signal)
      return res.existed
    } catch (err) {
      // A blob PUT is idempotent (content-addressed), so it is simply sent again when another
      // client is uploading the same content right now (it dedupes once that commits), or when a
      // kept-alive connection was closed under it: one lost connection must not fail a push of
      // 10,000 files.
      // Over the proxy's per-client push rate (rateLimits.push): wait as long as it says.
      const limited = isShoalError(err, 'TOO_MANY_REQUESTS') && attempt < RATE_LIMIT_RETRIES
      const again =
        limited ||
        (isShoalError(err, 'UPLOAD_IN_PROGRESS') && attempt < IN_PROGRESS_RETRIES) ||
        (isShoalError(err, 'UNAVAILABLE') && attempt < TRANSPORT_RETRIES)
      if (!again || signal.aborted) throw err
      const wait = limited ? retryAfterMs(err) : RETRY_WAIT_MS * Math.min(attempt, 4)
      await new Promise((r) => setTimeout(r, wait))
      signal.throwIfAborted()
    }
  }
}

/** Counts the bytes read from `source` (upload progress) without copying them. */
function counted(source: Readable, onBytes: (n: number) => void): Readable {
  const tee = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onBytes(chunk.length)
      cb(null, chunk)
    },
  })
  source.once('error', (err) => tee.destroy(err))
  tee.once('close', () => source.destroy())
  return source.pipe(tee)
}

export function requestTimeoutMs(timeoutSeconds: number | undefined): number {
  // At least a minute: with --timeout the watchdog cuts a stalled push sooner anyway.
  return timeoutSeconds ? Math.max(60_000, timeoutSeconds * 1000) : 300_000
}
