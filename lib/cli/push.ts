/**
 * PushCLI push: hash the file, build its tag, upload through the proxy (which skips a digest
 * already stored: dedupe), then put tag → digest.
 */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename, dirname, resolve } from 'node:path'
import { DEFAULT_NAMESPACE, type Digest, digestFile, Tag } from '../core/index.js'
import { errnoCode, ShoalError } from '../errors/index.js'
import { ProxyClient } from '../proxy/client/index.js'
import { clientTimeoutMs, withTimeout } from './common.js'

export interface PushOptions {
  srcPath: string
  srcHost: string
  tag?: string
  version?: string
  dstHost: string
  namespace?: string
  timeoutSeconds?: number
}

export interface PushResult {
  tag: Tag
  digest: Digest
  size: number
  uploaded: boolean
}

export async function push(opts: PushOptions): Promise<PushResult> {
  const path = resolve(opts.srcPath)
  let st: Awaited<ReturnType<typeof stat>>
  try {
    st = await stat(path)
  } catch (err) {
    const why = errnoCode(err) === 'ENOENT' ? 'no such file' : (errnoCode(err) ?? 'cannot read it')
    throw new ShoalError('INVALID_PATH', `cannot push ${opts.srcPath}: ${why}`)
  }
  if (st.isDirectory())
    throw new ShoalError(
      'INVALID_PATH',
      `cannot push ${opts.srcPath}: directories are not supported yet; push a file`,
    )
  if (!st.isFile()) throw new ShoalError('INVALID_PATH', `cannot push ${opts.srcPath}: not a regular file`)

  const tag = opts.tag
    ? withVersion(Tag.parse(opts.tag), opts.version)
    : Tag.from({
        srcHost: opts.srcHost,
        srcDir: dirname(path),
        fileName: basename(path),
        version: opts.version,
      })
  return withTimeout(`push of ${opts.srcPath}`, opts.timeoutSeconds, (signal) =>
    upload(path, tag, opts, signal),
  )
}

async function upload(
  path: string,
  tag: Tag,
  opts: PushOptions,
  signal: AbortSignal | undefined,
): Promise<PushResult> {
  const ns = opts.namespace ?? DEFAULT_NAMESPACE
  const { digest, size } = await digestFile(path, signal)
  const proxy = new ProxyClient(opts.dstHost, { timeoutMs: clientTimeoutMs(opts.timeoutSeconds, 30_000) })
  // No HEAD first: the proxy's PUT finds a stored blob itself (the owner's upload start says
  // so) and answers before reading the body, so a push asks the cluster once, not twice.
  const result = await proxy.pushBlob(
    ns,
    digest,
    createReadStream(path, { highWaterMark: 1 << 20 }),
    size,
    signal,
  )
  const uploaded = !result.existed
  await proxy.putTag(tag, digest, signal)
  return { tag, digest, size, uploaded }
}

function withVersion(tag: Tag, version: string | undefined): Tag {
  return version ? tag.withVersion(version) : tag
}
