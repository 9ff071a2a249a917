/** An in-memory backend: for unit tests and as a second implementation of the contract. */
import { Readable } from 'node:stream'
import { ShoalError } from '../errors/index.js'
import { type Backend, checkKey, DEFAULT_LIST_LIMIT, type ListPage, type ObjectStat } from './types.js'
import { checkPrefix, resolveRange } from './util.js'

export class MemoryBackend implements Backend {
  readonly kind = 'memory'
  private readonly objects = new Map<string, Buffer>()

  async stat(key: string): Promise<ObjectStat | undefined> {
    checkKey(key)
    const obj = this.objects.get(key)
    return obj ? { size: obj.length } : undefined
  }

  async get(key: string, opts: { start?: number; end?: number } = {}): Promise<Readable> {
    checkKey(key)
    const obj = this.objects.get(key)
    if (!obj) throw new ShoalError('BLOB_NOT_FOUND', `object not found: ${key}`)
    const { start, end } = resolveRange(obj.length, opts, key)
    return Readable.from([obj.subarray(start, end + 1)])
  }

  async put(key: string, body: Readable | Buffer, opts: { size?: number } = {}): Promise<void> {
    checkKey(key)
    let data: Buffer
    if (Buffer.isBuffer(body)) data = body
    else {
      const chunks: Buffer[] = []
      for await (const c of body) chunks.push(c as Buffer)
      data = Buffer.concat(chunks)
    }
    if (opts.size !== undefined && opts.size !== data.length) {
      throw new ShoalError('SIZE_MISMATCH', `object ${key}: got ${data.length} bytes, expected ${opts.size}`)
    }
    this.objects.set(key, Buffer.from(data))
  }

  async delete(key: string): Promise<void> {
    checkKey(key)
    this.objects.delete(key)
  }

  async list(prefix: string, opts: { after?: string; limit?: number } = {}): Promise<ListPage> {
    checkPrefix(prefix)
    const limit = opts.limit ?? DEFAULT_LIST_LIMIT
    const keys = [...this.objects.keys()]
      .filter(
        (k) =>
          k.startsWith(prefix) &&
          (opts.after === undefined || Buffer.compare(Buffer.from(k), Buffer.from(opts.after)) > 0),
      )
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    const page = keys.slice(0, limit)
    return keys.length > limit ? { keys: page, next: page[page.length - 1] as string } : { keys: page }
  }
}
