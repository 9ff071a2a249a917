/**
 * PushCLI `--dst-type csgw` and PullCLI `--src-host ftp://…`: the clients' CSGW paths, on top
 * of lib/csgw. Credentials come from SHOAL_CSGW_USER / SHOAL_CSGW_PASSWORD or a netrc file
 * (SHOAL_CSGW_NETRC, default ~/.netrc), never from a flag: a flag is visible in `ps`.
 */
import { mkdir, stat } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import { digestFile } from '../core/index.js'
import { CsgwClient, parseCsgwAddress } from '../csgw/index.js'
import { errnoCode, ShoalError } from '../errors/index.js'
import { withTimeout } from './common.js'

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
  /** The file name in the address's folder. */
  name: string
  dstPath: string
  /** No progress (connect, reply or data) for this long fails the pull; undefined: 10 s. */
  timeoutSeconds?: number
}

export interface CsgwPullResult {
  url: string
  path: string
  size: number
  digest: string
  seconds: number
  resumes: number
}

function csgwClient(address: string, noProgressSeconds: number | undefined): CsgwClient {
  parseCsgwAddress(address) // fails early, with a message that never echoes the address
  const ms = (noProgressSeconds ?? 10) * 1000
  return new CsgwClient({
    address,
    netrcPath: process.env.SHOAL_CSGW_NETRC || undefined,
    connectTimeoutMs: ms,
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

export async function pullFromCsgw(opts: CsgwPullOptions): Promise<CsgwPullResult> {
  const started = Date.now()
  const client = csgwClient(opts.srcHost, opts.timeoutSeconds)
  const dir = resolve(opts.dstPath)
  await ensureDir(dir)
  const r = await client.download(undefined, opts.name, join(dir, opts.name))
  return {
    url: `${client.server}/${opts.name}`,
    path: r.path,
    size: r.size,
    digest: `sha256:${r.sha256}`,
    seconds: (Date.now() - started) / 1000,
    resumes: r.resumes,
  }
}

async function ensureDir(dir: string): Promise<void> {
  try {
    const st = await stat(dir)
    if (!st.isDirectory()) throw new ShoalError('INVALID_PATH', `--dst-path ${dir} is not a directory`)
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err
    await mkdir(dir, { recursive: true }).catch((e) => {
      throw new ShoalError('INVALID_PATH', `cannot create --dst-path ${dir}: ${errnoCode(e) ?? String(e)}`)
    })
  }
}
