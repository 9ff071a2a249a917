/**
 * The S3 backend's configuration. Credentials are wrapped in Secret as soon as they are parsed,
 * so a config object can be logged, inspected or put into an error message without leaking
 * them: every way of turning a Secret into text gives "[redacted]".
 */
import { readFileSync } from 'node:fs'
import { inspect } from 'node:util'
import { z } from '../../config/index.js'
import { ShoalError } from '../../errors/index.js'

const REDACTED = '[redacted]'

/** A credential value: only reveal() gives it back; JSON, String() and inspect() print "[redacted]". */
export class Secret {
  readonly #value: string
  constructor(value: string) {
    this.#value = value
  }
  reveal(): string {
    return this.#value
  }
  toJSON(): string {
    return REDACTED
  }
  toString(): string {
    return REDACTED
  }
  [inspect.custom](): string {
    return REDACTED
  }
}

const secret = z
  .string()
  .min(1)
  .transform((s) => new Secret(s))

/** Credentials written in the config file (or a flag): prefer the *File form in production. */
const InlineCredentials = z.strictObject({
  accessKeyId: secret,
  secretAccessKey: secret,
  sessionToken: secret.optional(),
})

/** Credentials read at start from files (e.g. mounted Kubernetes secrets); only the paths are in the config. */
const FileCredentials = z.strictObject({
  accessKeyIdFile: z.string().min(1),
  secretAccessKeyFile: z.string().min(1),
  sessionTokenFile: z.string().min(1).optional(),
})

export const S3BackendConfig = z
  .strictObject({
    type: z.literal('s3'),
    /** S3 bucket names are 3..63 characters. */
    bucket: z
      .string()
      .min(3)
      .max(63)
      .regex(/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/, 'must be a valid S3 bucket name (lower case, digits, . and -)'),
    /** Put before every key ("shoal" → "shoal/blobs/..."); a missing trailing '/' is added. */
    prefix: z.string().regex(/^[^/]/, 'must not start with "/"').optional(),
    region: z.string().min(1).default('us-east-1'),
    /** An S3-compatible server (MinIO, Ceph, s3rver): its base URL. */
    endpoint: z.url({ protocol: /^https?$/ }).optional(),
    /** Bucket in the path (http://host/bucket/key), as most S3-compatible servers need; default true with an endpoint. */
    forcePathStyle: z.boolean().optional(),
    /** Absent: the SDK's default chain (environment, shared profile, container/instance metadata). */
    credentials: z.union([InlineCredentials, FileCredentials]).optional(),
    /** Multipart part size, bytes (S3's minimum is 5 MiB); parts are held in memory while sent. */
    partSizeBytes: z
      .number()
      .int()
      .min(5 << 20)
      .max(512 << 20)
      .default(8 << 20),
    /** Parts in flight per upload: memory per upload is about partSizeBytes × (this + 1). */
    uploadConcurrency: z.number().int().min(1).max(16).default(4),
    /** Attempts per request on retryable errors (5xx, throttling, network), backoff with full jitter. */
    maxAttempts: z.number().int().min(1).max(20).default(5),
    /** First retry waits up to this long; each further one doubles it (up to 20 s), ms. */
    retryBaseMs: z.number().int().min(1).max(60_000).default(100),
    /** A connection attempt longer than this fails (and is retried), ms. */
    connectTimeoutMs: z.number().int().min(100).max(300_000).default(5_000),
    /** A request whose socket is idle this long fails (and is retried), ms. */
    requestTimeoutMs: z.number().int().min(1000).max(3_600_000).default(60_000),
  })
  .transform((c) => ({
    ...c,
    prefix:
      c.prefix === undefined || c.prefix === '' ? '' : c.prefix.endsWith('/') ? c.prefix : `${c.prefix}/`,
    forcePathStyle: c.forcePathStyle ?? c.endpoint !== undefined,
  }))

export type S3BackendConfig = z.output<typeof S3BackendConfig>

export interface ResolvedCredentials {
  accessKeyId: Secret
  secretAccessKey: Secret
  sessionToken?: Secret
}

/** Reads credential files (at start, so a missing file stops the daemon with a line naming its path). */
export function resolveCredentials(c: S3BackendConfig['credentials']): ResolvedCredentials | undefined {
  if (c === undefined) return undefined
  if ('accessKeyId' in c) return c
  const read = (path: string, what: string): Secret => {
    let text: string
    try {
      text = readFileSync(path, 'utf8').trim()
    } catch (err) {
      throw new ShoalError(
        'CONFIG_INVALID',
        `cannot read the S3 ${what} file ${path}: ${(err as Error).message}`,
      )
    }
    if (text === '') throw new ShoalError('CONFIG_INVALID', `the S3 ${what} file ${path} is empty`)
    return new Secret(text)
  }
  return {
    accessKeyId: read(c.accessKeyIdFile, 'access key id'),
    secretAccessKey: read(c.secretAccessKeyFile, 'secret access key'),
    ...(c.sessionTokenFile ? { sessionToken: read(c.sessionTokenFile, 'session token') } : {}),
  }
}
