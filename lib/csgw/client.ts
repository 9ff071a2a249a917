/**
 * The CSGW (storage gateway) client over FTP. Each operation opens its own connection and
 * closes it: a CSGW is used for a few large files at a time, so a pool would only add state
 * that goes stale behind firewalls. Every failure is a ShoalError naming the server by its
 * redacted address; credentials go to the server and nowhere else.
 */
import { randomBytes } from 'node:crypto'
import { stat as fsStat } from 'node:fs/promises'
import { posix } from 'node:path'
import type { ConnectionOptions } from 'node:tls'
import { Client, type FileInfo } from 'basic-ftp'
import { errnoCode, ShoalError, toShoalError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import { type CsgwAddress, checkRemoteName, parseCsgwAddress, resolveRemoteDir } from './address.js'
import { csgwError } from './errors.js'
import { findNetrc, readNetrc } from './netrc.js'

export interface CsgwOptions {
  /** `ftp://host[:port]/dir` or `ftps://…` (explicit TLS). */
  address: string
  user?: string
  password?: string
  /** Read when no user comes from the options, the address or the environment; default ~/.netrc. */
  netrcPath?: string
  /** Explicit TLS even for an ftp:// address. */
  secure?: boolean
  /** TLS options (ca, rejectUnauthorized) for ftps. */
  tls?: ConnectionOptions
  /** Environment to read SHOAL_CSGW_USER / SHOAL_CSGW_PASSWORD from (default process.env). */
  env?: NodeJS.ProcessEnv
  /** Connecting and logging in (default 10 s). */
  connectTimeoutMs?: number
  /** A control reply or data bytes must arrive within this (default 30 s); 0 = none. */
  noProgressTimeoutMs?: number
  /** Reconnects of a download that made no progress since the last one (default 5). */
  retries?: number
  /** First wait before a reconnect, doubled each time up to 5 s (default 250 ms). */
  backoffMs?: number
  logger?: Logger
}

export interface CsgwProgress {
  bytes: number
  total: number
}

export interface TransferOptions {
  signal?: AbortSignal
  onProgress?: (p: CsgwProgress) => void
}

export interface CsgwEntry {
  name: string
  size: number
  type: 'file' | 'directory' | 'other'
  modifiedAt?: Date
}

interface Credentials {
  user: string
  password: string
}

export class CsgwBase {
  readonly address: CsgwAddress
  /** The address as it may be printed. */
  readonly server: string
  protected readonly opts: CsgwOptions
  protected readonly log: Logger | undefined
  private credentials: Promise<Credentials> | undefined

  constructor(opts: CsgwOptions) {
    this.opts = opts
    this.address = parseCsgwAddress(opts.address)
    if (opts.secure) this.address.secure = true
    this.server = this.address.redacted
    this.log = opts.logger?.child({ component: 'csgw', server: this.server })
  }

  /** Files and folders in `dir` (relative to the address's folder unless absolute). */
  async list(dir?: string, opts: { signal?: AbortSignal } = {}): Promise<CsgwEntry[]> {
    const path = resolveRemoteDir(this.address.dir, dir)
    return this.session(`listing ${path}`, opts.signal, async (c) => {
      const list = await c.list(path)
      return list.map(toEntry)
    })
  }

  /** Size of a remote file; NOT_FOUND when it is not there. */
  async stat(
    dir: string | undefined,
    name: string,
    opts: { signal?: AbortSignal } = {},
  ): Promise<{ size: number }> {
    checkRemoteName(name)
    const path = posix.join(resolveRemoteDir(this.address.dir, dir), name)
    return this.session(`reading the size of ${path}`, opts.signal, async (c) => ({
      size: await c.size(path),
    }))
  }

  async remove(dir: string | undefined, name: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    checkRemoteName(name)
    const path = posix.join(resolveRemoteDir(this.address.dir, dir), name)
    await this.session(`removing ${path}`, opts.signal, async (c) => {
      await c.remove(path)
    })
  }

  /**
   * Uploads to `.name.shoal-part-<random>` in the folder (created when missing), checks the
   * server's SIZE, then renames to `name`: a reader of the folder never sees a partial file under
   * the final name. The temp file is removed when anything fails.
   */
  async upload(
    localFile: string,
    dir: string | undefined,
    name: string,
    opts: TransferOptions = {},
  ): Promise<{ size: number; path: string }> {
    checkRemoteName(name)
    const remoteDir = resolveRemoteDir(this.address.dir, dir)
    const finalPath = posix.join(remoteDir, name)
    const tempName = `.${name}.shoal-part-${randomBytes(6).toString('hex')}`
    const tempPath = posix.join(remoteDir, tempName)
    let size: number
    try {
      const st = await fsStat(localFile)
      if (!st.isFile()) throw new ShoalError('INVALID_PATH', `${localFile} is not a regular file`)
      size = st.size
    } catch (err) {
      if (err instanceof ShoalError) throw err
      throw new ShoalError('INVALID_PATH', `cannot read ${localFile}: ${errnoCode(err) ?? String(err)}`, {
        cause: err,
      })
    }
    let started = false
    try {
      await this.session(`uploading ${finalPath}`, opts.signal, async (c) => {
        await c.ensureDir(remoteDir)
        started = true
        c.trackProgress((info) => opts.onProgress?.({ bytes: info.bytes, total: size }))
        await c.uploadFrom(localFile, tempPath)
        c.trackProgress()
        const remote = await c.size(tempPath)
        if (remote !== size)
          throw new ShoalError(
            'SIZE_MISMATCH',
            `CSGW ${this.server} holds ${remote} bytes of ${finalPath} after the upload, ${size} were sent: push again`,
            { details: { expected: size, actual: remote } },
          )
        await c.rename(tempPath, finalPath)
      })
    } catch (err) {
      if (started) await this.removeQuietly(tempPath)
      throw err
    }
    this.log?.info({ path: finalPath, size }, 'uploaded to the CSGW')
    return { size, path: finalPath }
  }

  /** Best effort, bounded: the temp file of a failed upload goes away. */
  protected async removeQuietly(path: string): Promise<void> {
    try {
      await this.session(`removing ${path}`, AbortSignal.timeout(this.connectTimeoutMs() * 2), (c) =>
        c.remove(path, true),
      )
    } catch (err) {
      this.log?.warn({ path, err: toShoalError(err).message }, 'could not remove a temp file on the CSGW')
    }
  }

  protected connectTimeoutMs(): number {
    return this.opts.connectTimeoutMs ?? 10_000
  }

  /**
   * Connects, logs in, runs `work`, closes. Aborting (the caller's signal, or the connect
   * deadline) closes the connection, which is how basic-ftp's calls are cancelled.
   */
  protected async session<T>(
    what: string,
    signal: AbortSignal | undefined,
    work: (c: Client) => Promise<T>,
  ): Promise<T> {
    if (signal?.aborted) throw toShoalError(signal.reason)
    const creds = await this.resolveCredentials()
    const client = new Client(this.opts.noProgressTimeoutMs ?? 30_000)
    const ctx = { server: this.server, what, secrets: [creds.password] }
    let connectTimedOut = false
    const onAbort = () => client.close()
    signal?.addEventListener('abort', onAbort, { once: true })
    const connectMs = this.connectTimeoutMs()
    const timer = setTimeout(() => {
      connectTimedOut = true
      client.close()
    }, connectMs)
    try {
      try {
        await client.access({
          host: this.address.host,
          port: this.address.port,
          user: creds.user,
          password: creds.password,
          secure: this.address.secure,
          secureOptions: this.opts.tls,
        })
      } finally {
        clearTimeout(timer)
      }
      return await work(client)
    } catch (err) {
      if (signal?.aborted) throw toShoalError(signal.reason ?? err)
      if (connectTimedOut)
        throw new ShoalError(
          'TIMEOUT',
          `CSGW ${this.server} did not answer within ${connectMs / 1000} s: check the address and that the server is up`,
          { cause: err },
        )
      throw csgwError(err, ctx)
    } finally {
      signal?.removeEventListener('abort', onAbort)
      client.close()
    }
  }

  /** Options, then the address, then SHOAL_CSGW_USER/PASSWORD, then netrc, then anonymous. */
  protected resolveCredentials(): Promise<Credentials> {
    this.credentials ??= (async () => {
      const env = this.opts.env ?? process.env
      if (this.opts.user) return { user: this.opts.user, password: this.opts.password ?? '' }
      if (this.address.user) return { user: this.address.user, password: this.address.password ?? '' }
      if (env.SHOAL_CSGW_USER) return { user: env.SHOAL_CSGW_USER, password: env.SHOAL_CSGW_PASSWORD ?? '' }
      const entry = findNetrc(await readNetrc(this.opts.netrcPath), this.address.host)
      if (entry?.login) return { user: entry.login, password: entry.password ?? '' }
      return { user: 'anonymous', password: 'shoal@' }
    })()
    return this.credentials
  }
}

function toEntry(f: FileInfo): CsgwEntry {
  return {
    name: f.name,
    size: f.size,
    type: f.isDirectory ? 'directory' : f.isFile ? 'file' : 'other',
    modifiedAt: f.modifiedAt,
  }
}
