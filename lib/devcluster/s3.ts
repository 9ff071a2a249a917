/**
 * The devcluster's S3-compatible server (`shoal devcluster up --s3`): s3rver, a real S3 HTTP
 * API over a local folder, run as a process of its own so the origins reach it over sockets as
 * they would reach S3. s3rver is a development dependency: a production install (npm install
 * --omit=dev) does not have it, and `up --s3` says so in one line before starting anything.
 */
import crypto from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { createRequire } from 'node:module'
import { ShoalError } from '../errors/index.js'

const MISSING =
  'devcluster --s3 needs the s3rver package, a development dependency that this install does not have; run "npm install" (with dev dependencies) in the shoal folder, or start without --s3'

/** Throws the one-line MISSING error when s3rver cannot be loaded from here. */
export function checkS3rverInstalled(): void {
  try {
    createRequire(import.meta.url).resolve('s3rver')
  } catch {
    throw new ShoalError('UNAVAILABLE', MISSING)
  }
}

/**
 * s3rver encrypts ListObjectsV2 continuation tokens with single DES, which OpenSSL 3 (Node 20)
 * only has in its legacy provider: every truncated listing is a 500. Triple DES with the key
 * repeated three times computes exactly single DES and is in the default provider, so 'des'
 * is swapped for it (s3rver calls crypto.createCipheriv through the module object). Only in
 * processes that run s3rver: the devcluster's S3 server and tests.
 */
export function allowS3rverDes(): void {
  const patched = crypto as unknown as { __shoalDes?: boolean }
  if (patched.__shoalDes) return
  patched.__shoalDes = true
  const swap = <F extends (alg: string, key: Buffer, iv: Buffer) => unknown>(fn: F): F =>
    ((alg: string, key: Buffer, iv: Buffer) =>
      alg === 'des' ? fn('des-ede3-cbc', Buffer.concat([key, key, key]), iv) : fn(alg, key, iv)) as F
  crypto.createCipheriv = swap(crypto.createCipheriv as never)
  crypto.createDecipheriv = swap(crypto.createDecipheriv as never)
}

interface S3rverLike {
  configureBuckets(): Promise<unknown>
  callback(): (req: unknown, res: unknown) => void
}

/**
 * Serves s3rver on `port` with `bucket` created, objects under `directory`. GET /health and
 * /readiness answer 200 (the devcluster's status and start-up checks ask every process that);
 * every other request is s3rver's, so a bucket cannot be named "health" or "readiness".
 * Resolves once listening; stops on SIGTERM/SIGINT.
 */
export async function runS3Server(opts: { port: number; host?: string; directory: string; bucket: string }) {
  checkS3rverInstalled()
  allowS3rverDes()
  const { default: S3rver } = (await import('s3rver')) as unknown as {
    default: new (o: Record<string, unknown>) => S3rverLike
  }
  const s3 = new S3rver({
    silent: true,
    directory: opts.directory,
    configureBuckets: [{ name: opts.bucket }],
  })
  await s3.configureBuckets()
  const handle = s3.callback()
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/health' || req.url === '/readiness')) {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n')
      return
    }
    handle(req, res)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new ShoalError('UNAVAILABLE', `S3 server cannot listen on port ${opts.port}: ${err.message}`)),
    )
    server.listen(opts.port, opts.host ?? '127.0.0.1', () => resolve())
  })
  process.stdout.write(
    `${JSON.stringify({ msg: 's3 server started', port: opts.port, bucket: opts.bucket, directory: opts.directory })}\n`,
  )
  const stop = () => {
    server.close()
    server.closeAllConnections()
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}
