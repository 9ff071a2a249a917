/**
 * The S3 backend: objects in one bucket (AWS S3 or an S3-compatible server), every key under
 * the configured prefix. The only module that talks to @aws-sdk/client-s3 (loaded lazily,
 * sdk.ts). Puts stream (upload.ts), gets stream with ranges, requests are retried with
 * backoff (retry.ts) and every failure is a ShoalError naming the bucket and the key.
 */
import { addAbortSignal, type Readable } from 'node:stream'
import type { S3Client } from '@aws-sdk/client-s3'
import { ShoalError } from '../../errors/index.js'
import { type Backend, checkKey, DEFAULT_LIST_LIMIT, type ListPage, type ObjectStat } from '../types.js'
import { checkPrefix, resolveRange } from '../util.js'
import { type ResolvedCredentials, resolveCredentials, type S3BackendConfig } from './config.js'
import { answeredRange, trimToRange } from './range.js'
import { httpStatus, isNotFound, mapS3Error, networkFailure, withRetry } from './retry.js'
import { loadSdk, type Sdk, silenceNodeVersionWarning } from './sdk.js'
import { putObject } from './upload.js'

export { S3BackendConfig, Secret } from './config.js'

/** The start-up check tries twice at most: a daemon should fail fast and say why. */
const CHECK_ATTEMPTS = 2

export class S3Backend implements Backend {
  readonly kind = 's3'
  readonly bucket: string
  readonly prefix: string
  private readonly credentials: ResolvedCredentials | undefined
  private ready: Promise<{ sdk: Sdk; client: S3Client }> | undefined

  constructor(private readonly config: S3BackendConfig) {
    this.bucket = config.bucket
    this.prefix = config.prefix
    // Credential files are read now, so a missing one fails the daemon's start, not its first put.
    this.credentials = resolveCredentials(config.credentials)
  }

  /** Where this backend stores, for logs and messages: s3://bucket/prefix (endpoint). */
  get where(): string {
    return `s3://${this.bucket}/${this.prefix}${this.config.endpoint ? ` at ${this.config.endpoint}` : ''}`
  }

  /**
   * One cheap request (HeadBucket) at start, so a missing bucket, wrong credentials or an
   * unreachable endpoint stop the daemon with one line naming the problem.
   */
  async check(signal?: AbortSignal): Promise<void> {
    const { sdk, client } = await this.connect()
    try {
      await withRetry(
        (_n) => client.send(new sdk.HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: signal }),
        { attempts: CHECK_ATTEMPTS, baseMs: this.config.retryBaseMs, signal, what: `check ${this.bucket}` },
      )
    } catch (err) {
      const status = httpStatus(err)
      const net = networkFailure(err)
      const why = net
        ? `cannot reach the S3 endpoint ${this.config.endpoint ?? `of region ${this.config.region}`} (${net})`
        : status === 404
          ? 'the bucket does not exist'
          : status === 403
            ? 'access denied: check the credentials and the bucket policy'
            : status === 301 || status === 400
              ? `the bucket is not in region ${this.config.region} (or the request is malformed)`
              : mapS3Error(err, 'check', this.secrets()).message
      throw new ShoalError('BACKEND_ERROR', `s3 backend ${this.where}: ${why}`, { cause: err })
    }
  }

  async stat(key: string, signal?: AbortSignal): Promise<ObjectStat | undefined> {
    checkKey(key)
    const { sdk, client } = await this.connect()
    try {
      const out = await this.retry(
        `stat ${key}`,
        (s) =>
          client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.s3Key(key) }), {
            abortSignal: s,
          }),
        signal,
      )
      return { size: out.ContentLength ?? 0 }
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw this.error(err, 'stat', key)
    }
  }

  async get(
    key: string,
    opts: { start?: number; end?: number; signal?: AbortSignal } = {},
  ): Promise<Readable> {
    checkKey(key)
    const range = rangeHeader(opts, key)
    const { sdk, client } = await this.connect()
    let body: Readable
    try {
      const out = await this.retry(
        `get ${key}`,
        (s) =>
          client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.s3Key(key), Range: range }), {
            abortSignal: s,
          }),
        opts.signal,
      )
      body = out.Body as Readable
      if (range !== undefined) {
        const got = answeredRange(out.ContentRange, out.ContentLength)
        if (got) body = trimToRange(body, got, { start: opts.start ?? 0, end: opts.end }, key)
      }
    } catch (err) {
      if (isNotFound(err))
        throw new ShoalError('BLOB_NOT_FOUND', `object not found: ${key} (${this.url(key)})`)
      if (httpStatus(err) === 416) {
        // S3 says only "invalid range": ask for the size so the error matches the other backends.
        const st = await this.stat(key, opts.signal)
        if (!st) throw new ShoalError('BLOB_NOT_FOUND', `object not found: ${key} (${this.url(key)})`)
        resolveRange(st.size, opts, key)
      }
      throw this.error(err, 'get', key)
    }
    return opts.signal ? addAbortSignal(opts.signal, body) : body
  }

  async put(
    key: string,
    body: Readable | Buffer,
    opts: { size?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    checkKey(key)
    const { sdk, client } = await this.connect()
    try {
      await putObject(
        {
          sdk,
          client,
          bucket: this.bucket,
          key: this.s3Key(key),
          shown: key,
          partSize: this.config.partSizeBytes,
          concurrency: this.config.uploadConcurrency,
          retry: (what, op, signal) => this.retry(what, op, signal),
        },
        body,
        opts,
      )
    } catch (err) {
      if (!Buffer.isBuffer(body)) body.destroy()
      throw this.error(err, 'put', key)
    }
  }

  async delete(key: string, signal?: AbortSignal): Promise<void> {
    checkKey(key)
    const { sdk, client } = await this.connect()
    try {
      // S3 answers 204 for an absent key too; some compatible servers say 404.
      await this.retry(
        `delete ${key}`,
        (s) =>
          client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: this.s3Key(key) }), {
            abortSignal: s,
          }),
        signal,
      )
    } catch (err) {
      if (isNotFound(err)) return
      throw this.error(err, 'delete', key)
    }
  }

  async list(
    prefix: string,
    opts: { after?: string; limit?: number; signal?: AbortSignal } = {},
  ): Promise<ListPage> {
    checkPrefix(prefix)
    const limit = opts.limit ?? DEFAULT_LIST_LIMIT
    const { sdk, client } = await this.connect()
    try {
      // StartAfter (a key) rather than a continuation token: our `next` is a key, so a page can
      // be resumed by any process, and S3 lists in UTF-8 byte order as the contract requires.
      const out = await this.retry(
        `list ${prefix || '/'}`,
        (s) =>
          client.send(
            new sdk.ListObjectsV2Command({
              Bucket: this.bucket,
              Prefix: this.prefix + prefix,
              StartAfter: opts.after === undefined ? undefined : this.prefix + opts.after,
              MaxKeys: limit,
            }),
            { abortSignal: s },
          ),
        opts.signal,
      )
      const keys = (out.Contents ?? []).map((o) => (o.Key ?? '').slice(this.prefix.length))
      const last = keys[keys.length - 1]
      return out.IsTruncated && last !== undefined ? { keys, next: last } : { keys }
    } catch (err) {
      throw this.error(err, 'list', prefix)
    }
  }

  /** Closes the client's pooled connections (tests; a daemon keeps its backend for life). */
  async close(): Promise<void> {
    if (!this.ready) return
    const { client } = await this.ready
    client.destroy()
  }

  private s3Key(key: string): string {
    return this.prefix + key
  }

  private retry<T>(what: string, op: (signal: AbortSignal | undefined) => Promise<T>, signal?: AbortSignal) {
    return withRetry(() => op(signal), {
      attempts: this.config.maxAttempts,
      baseMs: this.config.retryBaseMs,
      signal,
      what: `${what} in s3://${this.bucket}/${this.prefix}`,
    })
  }

  private error(err: unknown, verb: string, key: string): ShoalError {
    return mapS3Error(err, `${verb} ${this.url(key)}`, this.secrets())
  }

  /** s3://bucket/prefix+key, and the endpoint when it is not AWS: what an operator can look up. */
  private url(key: string): string {
    return `s3://${this.bucket}/${this.prefix}${key}${this.config.endpoint ? ` at ${this.config.endpoint}` : ''}`
  }

  /** Credential values to blank out of any message S3 sends back. */
  private secrets(): string[] {
    const c = this.credentials
    return c ? [c.accessKeyId, c.secretAccessKey, c.sessionToken].flatMap((s) => (s ? [s.reveal()] : [])) : []
  }

  private connect(): Promise<{ sdk: Sdk; client: S3Client }> {
    this.ready ??= loadSdk().then((sdk) => {
      silenceNodeVersionWarning()
      const c = this.config
      const creds = this.credentials
      const client = new sdk.S3Client({
        region: c.region,
        endpoint: c.endpoint,
        forcePathStyle: c.forcePathStyle,
        credentials: creds && {
          accessKeyId: creds.accessKeyId.reveal(),
          secretAccessKey: creds.secretAccessKey.reveal(),
          sessionToken: creds.sessionToken?.reveal(),
        },
        // Our retry loop (retry.ts) is the only one: the SDK's would multiply the attempts.
        maxAttempts: 1,
        // The default (checksums on every request) sends streamed bodies aws-chunked with a
        // trailer that S3-compatible servers such as s3rver store as data, corrupting the
        // object; we send Content-MD5 on puts instead, which S3 and compatible servers check.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        requestHandler: { connectionTimeout: c.connectTimeoutMs, requestTimeout: c.requestTimeoutMs },
      })
      return { sdk, client }
    })
    return this.ready
  }
}

/** The Range header for an optional inclusive range; what can be refused without S3 is refused here. */
function rangeHeader(opts: { start?: number; end?: number }, key: string): string | undefined {
  if (opts.start === undefined && opts.end === undefined) return undefined
  const start = opts.start ?? 0
  const bad =
    !Number.isSafeInteger(start) ||
    start < 0 ||
    (opts.end !== undefined && (!Number.isSafeInteger(opts.end) || opts.end < start))
  if (bad)
    throw new ShoalError(
      'INVALID_RANGE',
      `range ${opts.start ?? ''}-${opts.end ?? ''} is invalid for object ${key}`,
    )
  return `bytes=${start}-${opts.end ?? ''}`
}
