/**
 * Node images and genesis files on the host: pulled by digest (through whatever PullBlob the
 * caller gives: the agent's swarm pull in production), their sha256 checked here again, images
 * unpacked once per digest into `<workDir>/images/<hex>/` (a temporary folder renamed into place,
 * so a half-unpacked image never has the final name), and the image's manifest.json read into
 * the command to start.
 *
 * Image format (examples/onex/pack-image.mjs writes it): a ustar tarball of the program with a
 * manifest.json at its root: { schemaVersion: 1, name, version?, command: [...], args: [...] }.
 * command[0] is `{node}` (this host's Node.js) or a path inside the image; every `{placeholder}`
 * in command and args is one of PLACEHOLDERS, filled per Miner.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, readFile, realpath, rename, rm, stat } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { z } from '../../config/index.js'
import { printable } from '../../core/index.js'
import { errnoCode, ShoalError } from '../../errors/index.js'
import type { PullBlob } from './assignment.js'
import { type UnpackLimits, unpackTar } from './tar.js'

export const PLACEHOLDERS = [
  'node',
  'nodeId',
  'genesis',
  'staticNodes',
  'host',
  'portFile',
  'dataDir',
  'mineIntervalMs',
  'imageDir',
] as const
export type Placeholder = (typeof PLACEHOLDERS)[number]

const MAX_MANIFEST_BYTES = 64 << 10

const ImageManifestSchema = z.strictObject({
  schemaVersion: z.literal(1),
  name: z.string().min(1).max(200),
  version: z.string().max(100).optional(),
  command: z.array(z.string().min(1).max(1000)).min(1).max(16),
  args: z.array(z.string().max(4000)).max(256).default([]),
})
export type ImageManifest = z.infer<typeof ImageManifestSchema>

export interface PreparedImage {
  dir: string
  manifest: ImageManifest
}

/** Streams `path` through sha256 and compares with `digest`; refuses a file over `maxBytes` unread. */
export async function verifyFileDigest(
  path: string,
  digest: string,
  maxBytes: number,
  what: string,
): Promise<void> {
  const { size } = await stat(path)
  if (size > maxBytes)
    throw new ShoalError(
      'PAYLOAD_TOO_LARGE',
      `the ${what} is ${size} bytes, more than the ${maxBytes} allowed`,
    )
  const hash = createHash('sha256')
  await pipeline(createReadStream(path), hash)
  const got = `sha256:${hash.digest('hex')}`
  if (got !== digest)
    throw new ShoalError(
      'DIGEST_MISMATCH',
      `the ${what} pulled as ${digest} hashes to ${got}; it was not used`,
      {
        details: { expected: digest, actual: got },
      },
    )
}

/** Pulls `digest` to `dest` through `pullBlob`, verified; a temp name until it is. */
export async function pullVerified(
  pullBlob: PullBlob,
  digest: string,
  dest: string,
  maxBytes: number,
  what: string,
  signal?: AbortSignal,
): Promise<void> {
  const tmp = `${dest}.pull-${randomBytes(4).toString('hex')}`
  try {
    await pullBlob(digest, tmp, signal)
    await verifyFileDigest(tmp, digest, maxBytes, what)
    await rename(tmp, dest)
  } finally {
    await rm(tmp, { force: true })
  }
}

export interface ImageLimits extends UnpackLimits {
  /** The tarball itself. */
  maxImageBytes: number
}

/** The unpacked image for `digest` under `imagesDir`, pulling and unpacking it when missing. */
export async function prepareImage(
  pullBlob: PullBlob,
  digest: string,
  imagesDir: string,
  limits: ImageLimits,
  signal?: AbortSignal,
): Promise<PreparedImage> {
  const dir = join(imagesDir, digest.slice('sha256:'.length))
  if (await exists(dir)) return { dir, manifest: await readManifest(dir) }
  await mkdir(imagesDir, { recursive: true })
  const nonce = randomBytes(4).toString('hex')
  const tarPath = join(imagesDir, `.${nonce}.tar`)
  const tmpDir = join(imagesDir, `.${nonce}.unpack`)
  try {
    await pullVerified(pullBlob, digest, tarPath, limits.maxImageBytes, 'node image', signal)
    await mkdir(tmpDir)
    await unpackTar(tarPath, tmpDir, limits)
    const manifest = await readManifest(tmpDir)
    try {
      await rename(tmpDir, dir)
    } catch (err) {
      // Another Miner of the same image unpacked it first: the same digest, the same files.
      if (errnoCode(err) !== 'ENOTEMPTY' && errnoCode(err) !== 'EEXIST') throw err
    }
    return { dir, manifest }
  } finally {
    await rm(tarPath, { force: true })
    await rm(tmpDir, { recursive: true, force: true })
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

export async function readManifest(dir: string): Promise<ImageManifest> {
  const path = join(dir, 'manifest.json')
  const st = await stat(path).catch(() => undefined)
  if (!st?.isFile())
    throw new ShoalError('BAD_IMAGE', 'the image has no manifest.json at its root; nothing was run')
  if (st.size > MAX_MANIFEST_BYTES)
    throw new ShoalError('BAD_IMAGE', `the image's manifest.json is larger than ${MAX_MANIFEST_BYTES} bytes`)
  let doc: unknown
  try {
    doc = JSON.parse(await readFile(path, 'utf8'))
  } catch (err) {
    throw new ShoalError('BAD_IMAGE', `the image's manifest.json is not JSON: ${(err as Error).message}`)
  }
  const parsed = ImageManifestSchema.safeParse(doc)
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ')
    throw new ShoalError('BAD_IMAGE', `the image's manifest.json is invalid: ${problems}`)
  }
  for (const text of [...parsed.data.command, ...parsed.data.args]) fill(text, undefined)
  return parsed.data
}

/** Replaces `{name}` placeholders; with `values` undefined only checks that each is known. */
function fill(text: string, values: Record<Placeholder, string> | undefined): string {
  return text.replace(/\{([^{}]*)\}/g, (_all, name: string) => {
    if (!(PLACEHOLDERS as readonly string[]).includes(name))
      throw new ShoalError(
        'BAD_IMAGE',
        `the image's manifest.json uses an unknown placeholder {${printable(name, 40)}} (known: ${PLACEHOLDERS.join(', ')})`,
      )
    return values ? values[name as Placeholder] : ''
  })
}

/** The program and arguments to spawn: command[0] is this Node.js or a file inside the image. */
export async function renderCommand(
  image: PreparedImage,
  values: Omit<Record<Placeholder, string>, 'node' | 'imageDir'>,
): Promise<{ file: string; args: string[] }> {
  const all = { ...values, node: process.execPath, imageDir: image.dir }
  const [first = '', ...rest] = image.manifest.command
  let file: string
  if (first === '{node}') file = process.execPath
  else {
    const real = await realpath(join(image.dir, first)).catch(() => undefined)
    const rel = real === undefined ? '..' : relative(await realpath(image.dir), real)
    if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..')
      throw new ShoalError(
        'BAD_IMAGE',
        `the image's command ${printable(first)} is neither {node} nor a file inside the image`,
      )
    file = real as string
  }
  return { file, args: [...rest, ...image.manifest.args].map((a) => fill(a, all)) }
}
