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
import { DEFAULT_NAMESPACE, Digest, formatBytes, Tag } from '../core/index.js'
import { errnoCode, ShoalError } from '../errors/index.js'
import { urlPath } from '../http/index.js'
import { freeBytes, isNoSpaceError, noSpaceMessage } from '../store/space.js'
import { clientTimeoutMs, withTimeout } from './common.js'

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
  const tag = Tag.parse(opts.tag)
  const dir = resolve(opts.dstPath)
  await ensureDir(dir)
  return withTimeout(`pull of ${tag}`, opts.timeoutSeconds, (signal) => pullInto(dir, tag, opts, signal))
}

async function pullInto(
  dir: string,
  tag: Tag,
  opts: PullOptions,
  signal: AbortSignal | undefined,
): Promise<PullResult> {
  const started = Date.now()
  const agent = new AgentClient(opts.dstHost, { timeoutMs: clientTimeoutMs(opts.timeoutSeconds, 3_600_000) })
  const digest = await agent.resolve(tag, signal)
  const ns = opts.namespace ?? DEFAULT_NAMESPACE
  const blobPath = urlPath`/namespace/${ns}/blobs/${digest}`
  const { size: announced, body } = await agent.blob(ns, digest, { signal })

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
    await checkRoom(dir, announced)
    // Reading the agent's answer failed (it went away mid-stream), or writing here did: say which.
    let bodyError: unknown
    body.once('error', (err) => {
      bodyError = err
    })
    await pipeline(body, tee, createWriteStream(tmpPath, { flags: 'wx' }), { signal }).catch((err) => {
      throw err === bodyError ? agent.http.transportError(err, 'GET', blobPath, signal) : err
    })
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
    body.destroy()
    await rm(tmpPath, { force: true })
    if (isNoSpaceError(err)) throw noRoom(err, dir)
    throw err
  }
  return { tag, digest, size, path: finalPath, seconds: (Date.now() - started) / 1000 }
}

/** Refuses, before writing, a blob the destination's file system cannot hold. */
async function checkRoom(dir: string, size: number): Promise<void> {
  if (!(size > 0)) return
  const free = await freeBytes(dir).catch(() => undefined)
  if (free === undefined || free >= size) return
  throw new ShoalError(
    'INSUFFICIENT_STORAGE',
    `not enough disk space in ${dir}: the file is ${formatBytes(size)}, ${formatBytes(free)} is free; nothing was written`,
    { details: { path: dir, neededBytes: size, freeBytes: free } },
  )
}

function noRoom(err: unknown, dir: string): ShoalError {
  return new ShoalError(
    'INSUFFICIENT_STORAGE',
    `cannot write into ${dir}: ${noSpaceMessage(err, dir)}; nothing was written under the final name`,
    { cause: err },
  )
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
