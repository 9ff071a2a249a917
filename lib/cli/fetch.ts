/**
 * One blob from the local agent into a temp file: the agent downloads it through the swarm
 * (progress polled meanwhile, so a watchdog and a progress bar see it move), then the kernel
 * copies its verified cache file here (cache-copy.ts); where that cannot be done the agent
 * streams it and the bytes are hashed on the way and checked against the digest. Either way the
 * file is fsynced, and on any failure removed: the caller only renames a verified, durable file.
 */
import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { open, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { AgentClient } from '../agent/client/index.js'
import { Digest, formatBytes } from '../core/index.js'
import { ShoalError } from '../errors/index.js'
import { urlPath } from '../http/index.js'
import { freeBytes, isNoSpaceError, noSpaceMessage } from '../store/space.js'
import { cacheLocation, copyFromCache } from './cache-copy.js'

export interface FetchProgress {
  /** 'swarm': the agent is downloading (bytes = verified pieces); 'copy': bytes streamed here. */
  phase: 'swarm' | 'copy'
  bytes: number
  /** -1 until known. */
  total: number
  bytesFromOrigins?: number
  bytesFromAgents?: number
  /** Block bytes the agent received, verified or not (see peerBytes). */
  bytesReceived?: number
  /** Peers the agent is connected to in this download. */
  peers?: number
}

/**
 * Bytes received from peers so far: they grow within a piece (up to 16 MiB) before the piece
 * is verified, so a slow link that is still moving is seen moving.
 */
export function peerBytes(p: FetchProgress): number {
  return p.bytesReceived ?? 0
}

export interface FetchOptions {
  signal?: AbortSignal
  /** Called on every change; cheap callers only (per chunk while copying). */
  onProgress?: (p: FetchProgress) => void
  /** How often the agent's download is polled while it runs. */
  pollMs?: number
  /** Always stream through HTTP (hashed here), never copy the agent's cache file. */
  stream?: boolean
}

/**
 * Writes blob `digest` to `tmpPath` (created exclusively), verified and fsynced; returns its size
 * and whether it was the kernel's copy of the agent's cache file (else streamed and hashed here).
 */
export async function fetchBlob(
  agent: AgentClient,
  ns: string,
  digest: Digest,
  tmpPath: string,
  opts: FetchOptions = {},
): Promise<{ size: number; copied: boolean }> {
  const { signal, onProgress } = opts
  const stopPolling = onProgress ? pollDownload(agent, digest, onProgress, opts.pollMs ?? 500, signal) : noop
  let answer: Awaited<ReturnType<AgentClient['blob']>>
  try {
    const cached = opts.stream ? undefined : await cacheLocation(agent, ns, digest, signal)
    if (cached) {
      // The agent has the whole blob: from here on progress is the copy's (or the stream's).
      stopPolling()
      if (await viaCache(cached, tmpPath, onProgress)) return { size: cached.size, copied: true }
    }
    answer = await agent.blob(ns, digest, { signal })
  } finally {
    stopPolling()
  }
  const { size: announced, body } = answer
  const hash = createHash('sha256')
  let size = 0
  const tee = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk)
      size += chunk.length
      onProgress?.({ phase: 'copy', bytes: size, total: announced })
      cb(null, chunk)
    },
  })
  try {
    await checkRoom(dirname(tmpPath), announced)
    // Reading the agent's answer failed (it went away mid-stream), or writing here did: say which.
    let bodyError: unknown
    body.once('error', (err) => {
      bodyError = err
    })
    const blobPath = urlPath`/namespace/${ns}/blobs/${digest}`
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
    await syncFile(tmpPath)
    return { size, copied: false }
  } catch (err) {
    body.destroy()
    await rm(tmpPath, { force: true })
    if (isNoSpaceError(err)) throw noRoom(err, dirname(tmpPath))
    throw err
  }
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

function noop(): void {}

/** The kernel's copy of the agent's cache file, fsynced; false: stream it instead. */
async function viaCache(
  cached: { size: number; path: string },
  tmpPath: string,
  onProgress: FetchOptions['onProgress'],
): Promise<boolean> {
  try {
    await checkRoom(dirname(tmpPath), cached.size)
    if (!(await copyFromCache(cached, tmpPath, onProgress))) return false
    await syncFile(tmpPath)
    return true
  } catch (err) {
    await rm(tmpPath, { force: true })
    if (isNoSpaceError(err)) throw noRoom(err, dirname(tmpPath))
    throw err
  }
}

async function syncFile(path: string): Promise<void> {
  const fh = await open(path, 'r')
  await fh.sync().finally(() => fh.close())
}

/** Reports the agent's download progress until stopped; a failed poll is skipped, not fatal. */
function pollDownload(
  agent: AgentClient,
  digest: Digest,
  report: (p: FetchProgress) => void,
  everyMs: number,
  signal: AbortSignal | undefined,
): () => void {
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  const tick = async () => {
    try {
      const p = await agent.progress(digest, signal)
      if (stopped) return
      const done = p.pieceCount > 0 ? Math.min(p.size, Math.round((p.piecesDone / p.pieceCount) * p.size)) : 0
      report({
        phase: 'swarm',
        bytes: p.state === 'cached' || p.state === 'done' ? p.size : done,
        total: p.size,
        bytesFromOrigins: p.bytesFromOrigins,
        bytesFromAgents: p.bytesFromAgents,
        bytesReceived: p.bytesReceived,
        peers: p.peers,
      })
    } catch {
      // No download yet (the agent has not started it) or a blip: the next tick asks again.
    }
    if (!stopped) timer = setTimeout(tick, everyMs)
  }
  timer = setTimeout(tick, Math.min(everyMs, 100))
  return () => {
    stopped = true
    clearTimeout(timer)
  }
}
