/**
 * An in-process s3rver (a real S3 HTTP API on loopback, objects in a temp folder) for tests of
 * the S3 backend. Credentials are s3rver's fixed S3RVER/S3RVER; it checks both.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import S3rver from 's3rver'
import { S3Backend, S3BackendConfig } from '../../lib/backend/s3/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { allowS3rverDes } from '../../lib/devcluster/s3.js'

export interface S3Server {
  endpoint: string
  /** A bucket created at start. */
  bucket: string
  /** An S3Backend on `bucket`, with `over` merged into its config. */
  backend(over?: Record<string, unknown>): S3Backend
  close(): Promise<void>
}

export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }

export function s3Config(
  endpoint: string,
  bucket: string,
  over: Record<string, unknown> = {},
): S3BackendConfig {
  return validateConfig(S3BackendConfig, {
    type: 's3',
    bucket,
    endpoint,
    credentials: S3RVER_CREDENTIALS,
    // Tests must not wait seconds between retries.
    retryBaseMs: 5,
    ...over,
  })
}

export async function startS3rver(bucket = 'shoal-test'): Promise<S3Server> {
  allowS3rverDes()
  const directory = await mkdtemp(join(tmpdir(), 'shoal-s3rver-'))
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
  })
  const addr = await server.run()
  const endpoint = `http://127.0.0.1:${addr.port}`
  const made: S3Backend[] = []
  return {
    endpoint,
    bucket,
    backend(over = {}) {
      const b = new S3Backend(s3Config(endpoint, bucket, over))
      made.push(b)
      return b
    },
    async close() {
      await Promise.all(made.map((b) => b.close()))
      await server.close()
      await rm(directory, { recursive: true, force: true })
    },
  }
}
