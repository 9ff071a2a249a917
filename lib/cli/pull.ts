/**
 * PullCLI pull: the local agent resolves the tag and downloads the blob through the swarm;
 * the bytes land in a temp file in the destination folder, are checked against the digest,
 * and only then renamed to the file's own name. Nothing half-written ever has the final name.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, open, rename, rm, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { AgentClient } from '../agent/client/index.js'
import { DEFAULT_NAMESPACE, Digest, Tag } from '../core/index.js'
import { errnoCode, ShoalError } from '../errors/index.js'

export interface PullOptions {
  tag: string
  dstPath: string
  dstHost: string
  namespace?: string
  timeoutSeconds?: number
}

export interface PullResult {
  tag: Tag
  digest: Digest
  size: number
  path: string
  seconds: number
}

export async function pull(opts: PullOptions): Promise<PullResult> {
  const started = Date.now()
  const tag = Tag.parse(opts.tag)
  const dir = resolve(opts.dstPath)
  await ensureDir(dir)
  const signal = opts.timeoutSeconds ? AbortSignal.timeout(opts.timeoutSeconds * 1000) : undefined
  const agent = new AgentClient(opts.dstHost, { timeoutMs: (opts.timeoutSeconds ?? 3600) * 1000 })
  const digest = await agent.resolve(tag, signal)
  const ns = opts.namespace ?? DEFAULT_NAMESPACE
  const { body } = await agent.blob(ns, digest, { signal })

  const finalPath = join(dir, tag.fileName)
  const tmpPath = join(dir, `.${tag.fileName}.shoal-${randomBytes(4).toString('hex')}.tmp`)
  const hash = createHash('sha256')
  let size = 0
  const tee = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk)
      size += chunk.length
      cb(null, chunk)
    },
  })
  try {
    await pipeline(body, tee, createWriteStream(tmpPath, { flags: 'wx' }), { signal })
    const got = Digest.fromHash(hash)
    if (!got.equals(digest)) {
      throw new ShoalError(
        'DIGEST_MISMATCH',
        `received bytes hash to ${got}, expected ${digest}; nothing was written`,
      )
    }
    const fh = await open(tmpPath, 'r')
    await fh.sync().finally(() => fh.close())
    await rename(tmpPath, finalPath)
  } catch (err) {
    await rm(tmpPath, { force: true })
    if (signal?.aborted)
      throw new ShoalError('TIMEOUT', `pull of ${tag} did not finish within ${opts.timeoutSeconds} s`)
    throw err
  }
  return { tag, digest, size, path: finalPath, seconds: (Date.now() - started) / 1000 }
}

async function ensureDir(dir: string): Promise<void> {
  try {
    const st = await stat(dir)
    if (!st.isDirectory()) throw new ShoalError('INVALID_PATH', `--dst-path ${dir} is not a directory`)
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err
    await mkdir(dir, { recursive: true })
  }
}
