import { randomFillSync } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A temp folder removed when the test ends. */
export async function tempDir(
  t: { teardown(fn: () => unknown): void },
  prefix = 'shoal-test-',
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Writes `size` random bytes to `path` in 1 MiB chunks. */
export async function randomFile(path: string, size: number): Promise<void> {
  const stream = createWriteStream(path)
  for (let written = 0; written < size; ) {
    const n = Math.min(1 << 20, size - written)
    const chunk = randomFillSync(Buffer.allocUnsafe(n))
    written += n
    if (!stream.write(chunk)) await new Promise<void>((r) => stream.once('drain', () => r()))
  }
  await new Promise<void>((res, rej) => stream.end((err?: Error | null) => (err ? rej(err) : res())))
}
