/**
 * PushCLI `--dst-type csgw` and PullCLI `--src-host ftp://…`: the clients' CSGW paths, on top
 * of lib/csgw. Credentials come from SHOAL_CSGW_USER / SHOAL_CSGW_PASSWORD or a netrc file
 * (SHOAL_CSGW_NETRC, default ~/.netrc), never from a flag: a flag is visible in `ps`.
 */
import { rm, stat } from 'node:fs/promises'
import { basename, resolve } from 'node:path'
import { Digest, digestFile } from '../core/index.js'
import { CsgwClient, parseCsgwAddress } from '../csgw/index.js'
import { errnoCode, ShoalError } from '../errors/index.js'
import { withTimeout } from './common.js'
import {
  checkName,
  chooseTarget,
  type FileMeta,
  finishFile,
  holdsBytes,
  prepareDir,
  tempBeside,
} from './destination.js'
import type { FetchProgress } from './fetch.js'
import { checkFlagName, DEFAULT_FLAG, type FlagOptions, removeStaleFlag, writeFlag } from './flag-file.js'
import { withProgressTimeout } from './watchdog.js'

export interface CsgwPushOptions {
  srcPath: string
  /** ftp://host[:port]/dir or ftps://… */
  dstHost: string
  timeoutSeconds?: number
}

export interface CsgwPushResult {
  /** The redacted remote path, ftp://host:port/dir/name. */
  url: string
  digest: string
  size: number
}

export interface CsgwPullOptions {
  srcHost: string
  /** The file name in the address's folder (also the local name). */
  name: string
  dstPath: string
  /** Seconds without progress (connect, reply or data) before giving up; undefined: 10; 0: never. */
  timeoutSeconds?: number
  /** Replace an existing file (default true). */
  isCover?: boolean
  /** With isCover false: the name to write under when `name` is taken locally. */
  newName?: string
  /** 'F': write the flag file after the data; 'N' (default): none. */
  hasFlag?: 'F' | 'N'
  flag?: FlagOptions
  /** `sha256:<hex>` when known (from a tag): the copy is checked against it before it is placed. */
  expectedDigest?: Digest | string
  /** For the flag file's JSON content. */
  tag?: string
  mode?: number
  mtimeMs?: number
  onProgress?: (p: FetchProgress) => void
  signal?: AbortSignal
}

export interface CsgwPullResult {
  url: string
  path: string
  size: number
  digest: string
  seconds: number
  resumes: number
  /** 'local': the file was already there with the expected digest; nothing was downloaded. */
  source: 'csgw' | 'local'
  flag?: string
}

/** One CSGW file into a target already chosen under the cover rule (PullCLI's fallback too). */
export interface CsgwFetchOptions extends FileMeta {
  srcHost: string
  name: string
  /** The (prepared) destination folder and the final path in it, from chooseTarget. */
  dir: string
  target: string
  isCover: boolean
  expectedDigest?: Digest | string
  timeoutSeconds?: number
  /** Runs just before the file takes its final name (the stale flag's removal). */
  beforePlace?: () => Promise<void>
  onProgress?: (p: FetchProgress) => void
  signal?: AbortSignal
}

export interface CsgwFetched {
  url: string
  size: number
  digest: string
  resumes: number
  source: 'csgw' | 'local'
}

const DEFAULT_NO_PROGRESS_SECONDS = 10
/** setTimeout's largest delay: "no deadline" for the CSGW client's connect timer. */
const NEVER_MS = 0x7fffffff

function csgwClient(address: string, noProgressSeconds: number | undefined): CsgwClient {
  parseCsgwAddress(address) // fails early, with a message that never echoes the address
  const ms = (noProgressSeconds ?? DEFAULT_NO_PROGRESS_SECONDS) * 1000
  return new CsgwClient({
    address,
    netrcPath: process.env.SHOAL_CSGW_NETRC || undefined,
    // 0 means no deadline; a connect timer of 0 ms would close every connection at once.
    connectTimeoutMs: ms || NEVER_MS,
    noProgressTimeoutMs: ms,
  })
}

export async function pushToCsgw(opts: CsgwPushOptions): Promise<CsgwPushResult> {
  const path = resolve(opts.srcPath)
  const st = await stat(path).catch((err) => {
    const why = errnoCode(err) === 'ENOENT' ? 'no such file' : (errnoCode(err) ?? 'cannot read it')
    throw new ShoalError('INVALID_PATH', `cannot push ${opts.srcPath}: ${why}`)
  })
  if (!st.isFile()) throw new ShoalError('INVALID_PATH', `cannot push ${opts.srcPath}: not a regular file`)
  const client = csgwClient(opts.dstHost, opts.timeoutSeconds)
  const name = basename(path)
  return withTimeout(
    `push of ${opts.srcPath} to CSGW ${client.server}`,
    opts.timeoutSeconds,
    async (signal) => {
      const { digest } = await digestFile(path, signal)
      const up = await client.upload(path, undefined, name, { signal })
      return { url: `${client.server}/${name}`, digest: digest.toString(), size: up.size }
    },
  )
}

/**
 * PullCLI `--src-host ftp://…`: the same rules as a swarm pull. A bad name, an unwritable
 * folder or a taken name with isCover false fail before the CSGW is contacted; the download
 * goes to a temp file, is verified (size, and sha256 when known), fsynced, then placed; the
 * flag file comes last.
 */
export async function pullFromCsgw(opts: CsgwPullOptions): Promise<CsgwPullResult> {
  const started = Date.now()
  checkName(opts.name, 'file name')
  if (opts.newName !== undefined) checkName(opts.newName, '--new-name')
  parseCsgwAddress(opts.srcHost)
  const dir = await prepareDir(opts.dstPath)
  const isCover = opts.isCover ?? true
  const target = await chooseTarget(dir, opts.name, { isCover, newName: opts.newName })
  const flagSuffix = (opts.flag ?? DEFAULT_FLAG).suffix
  if (opts.hasFlag === 'F') checkFlagName(target, flagSuffix)
  const r = await csgwFetchInto({
    beforePlace: opts.hasFlag === 'F' ? () => removeStaleFlag(target, flagSuffix) : undefined,
    srcHost: opts.srcHost,
    name: opts.name,
    dir,
    target,
    isCover,
    expectedDigest: opts.expectedDigest,
    timeoutSeconds: opts.timeoutSeconds,
    onProgress: opts.onProgress,
    mode: opts.mode,
    mtimeMs: opts.mtimeMs,
    signal: opts.signal,
  })
  const result: CsgwPullResult = { ...r, path: target, seconds: 0 }
  if (opts.hasFlag === 'F')
    result.flag = await writeFlag(
      target,
      { digest: r.digest, size: r.size, tag: opts.tag },
      opts.flag ?? DEFAULT_FLAG,
    )
  result.seconds = (Date.now() - started) / 1000
  return result
}

/**
 * Downloads `name` from the CSGW folder into `target` (decided by the caller), under a
 * watchdog of `timeoutSeconds` without progress. With a known digest, a target that already
 * holds those bytes is kept as it is (source 'local'), and a copy that hashes otherwise is
 * DIGEST_MISMATCH with nothing placed.
 */
export async function csgwFetchInto(opts: CsgwFetchOptions): Promise<CsgwFetched> {
  const client = csgwClient(opts.srcHost, opts.timeoutSeconds)
  const url = `${client.server}/${opts.name}`
  const expected =
    opts.expectedDigest === undefined ? undefined : Digest.parse(opts.expectedDigest.toString())
  const seconds = opts.timeoutSeconds ?? DEFAULT_NO_PROGRESS_SECONDS
  return withProgressTimeout(
    `pull of ${url}`,
    seconds,
    async (signal, progress) => {
      const touch = () => progress.touch()
      if (
        expected &&
        opts.isCover &&
        (await holdsBytes(opts.target, expected, -1, { signal, onBytes: touch }))
      )
        return {
          url,
          size: (await stat(opts.target)).size,
          digest: expected.toString(),
          resumes: 0,
          source: 'local',
        }
      const tmpPath = tempBeside(opts.dir, basename(opts.target))
      let last = -1
      try {
        const r = await client.download(undefined, opts.name, tmpPath, {
          signal,
          expectedSha256: expected?.toString(),
          onProgress: (p) => {
            if (p.bytes > last) {
              last = p.bytes
              touch()
            }
            opts.onProgress?.({ phase: 'copy', bytes: p.bytes, total: p.total })
          },
        })
        touch()
        await finishFile(tmpPath, opts.target, {
          isCover: opts.isCover,
          mode: opts.mode,
          mtimeMs: opts.mtimeMs,
          beforePlace: opts.beforePlace,
          signal,
        })
        return { url, size: r.size, digest: `sha256:${r.sha256}`, resumes: r.resumes, source: 'csgw' }
      } finally {
        // Placed: gone already. Failed anywhere: nothing of it may stay beside the target.
        await rm(tmpPath, { force: true }).catch(() => {})
      }
    },
    opts.signal,
  )
}
