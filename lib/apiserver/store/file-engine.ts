/**
 * The embedded engine: every object in memory, every change appended to a write-ahead log
 * (`wal.ndjson`, one JSON line per change) and fsynced before it is acknowledged or seen by
 * anyone, and a periodic snapshot (`snapshot.ndjson`) written to a temporary file, fsynced and
 * renamed over the old one, after which the log starts again. A crash leaves at worst a torn
 * last log line (cut off at open) and never a half-written snapshot; replay skips log lines the
 * snapshot already holds, so a crash between the rename and the log's truncation loses nothing.
 *
 * Writes are group-committed: those queued while a flush runs go out in the next one, with one
 * fsync, each checked against the state as the writes before it in the batch leave it.
 * One process owns a folder at a time (a LOCK file with its pid).
 */
import { type FileHandle, mkdir, open, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { errnoCode, ShoalError } from '../../errors/index.js'
import type { Resource } from '../types.js'
import type { CommitResult, StorageEngine, StoredEvent } from './types.js'
import { ChangeWaiters } from './waiters.js'

export interface FileEngineOptions {
  dir: string
  /** Changes kept for watches to resume from; an older resourceVersion answers GONE. */
  historyEvents?: number
  /** A snapshot is written (and the log restarted) after this many logged changes. */
  compactEveryRecords?: number
}

interface Pending {
  coll: string
  key: string
  expected: string | undefined
  type: StoredEvent['type']
  obj: Resource
  resolve: (r: CommitResult) => void
  reject: (err: unknown) => void
}

const SNAPSHOT = 'snapshot.ndjson'
const WAL = 'wal.ndjson'
const FORMAT = 'shoal-resources-v1'
/** Folders open in this process: a second engine on one folder would fork its history. */
const openDirs = new Set<string>()

export class FileEngine implements StorageEngine {
  private readonly objects = new Map<string, Map<string, Resource>>()
  private rv = 0
  private hist: StoredEvent[] = []
  private histStart = 0
  /** Every event after floor is in the history. */
  private floor = 0
  private wal: FileHandle | undefined
  private walRecords = 0
  private queue: Pending[] = []
  private flushing: Promise<void> | undefined
  private broken: ShoalError | undefined
  private readonly waiters = new ChangeWaiters()
  private readonly historyEvents: number
  private readonly compactEvery: number
  private locked = false

  constructor(private readonly opts: FileEngineOptions) {
    this.historyEvents = opts.historyEvents ?? 10_000
    this.compactEvery = opts.compactEveryRecords ?? 1_000
  }

  async open(): Promise<void> {
    await mkdir(this.opts.dir, { recursive: true })
    await this.lock()
    await rm(join(this.opts.dir, `${SNAPSHOT}.tmp`), { force: true })
    const snapRv = await this.loadSnapshot()
    this.rv = snapRv
    this.floor = snapRv
    await this.replayWal(snapRv)
    this.wal = await open(join(this.opts.dir, WAL), 'a')
  }

  async close(): Promise<void> {
    await this.flushing
    this.waiters.wakeAll()
    await this.wal?.close()
    this.wal = undefined
    if (this.locked) {
      openDirs.delete(this.opts.dir)
      await rm(join(this.opts.dir, 'LOCK'), { force: true })
      this.locked = false
    }
  }

  async read(coll: string, key: string): Promise<Resource | undefined> {
    return this.objects.get(coll)?.get(key)
  }

  async list(coll: string, namespace: string | undefined): Promise<{ rv: number; items: Resource[] }> {
    const all = this.objects.get(coll) ?? new Map<string, Resource>()
    const prefix = namespace === undefined ? '' : `${namespace}/`
    const keys = [...all.keys()].filter((k) => k.startsWith(prefix)).sort()
    return { rv: this.rv, items: keys.map((k) => all.get(k) as Resource) }
  }

  async currentRv(): Promise<number> {
    return this.rv
  }

  async events(after: number, limit: number): Promise<StoredEvent[]> {
    if (after < this.floor)
      throw new ShoalError(
        'GONE',
        `resourceVersion ${after} is older than the history kept (from ${this.floor}): list again`,
      )
    const idx = this.histStart + (after - this.floor)
    return this.hist.slice(idx, idx + limit)
  }

  waitForChange(after: number, ms: number, signal?: AbortSignal): Promise<void> {
    return this.waiters.wait(this.rv, after, ms, signal)
  }

  commit(
    coll: string,
    key: string,
    expected: string | undefined,
    type: StoredEvent['type'],
    obj: Resource,
  ): Promise<CommitResult> {
    if (this.broken) return Promise.reject(this.broken)
    if (!this.wal) return Promise.reject(new ShoalError('UNAVAILABLE', 'the resource store is not open'))
    return new Promise((resolve, reject) => {
      this.queue.push({ coll, key, expected, type, obj, resolve, reject })
      this.flushing ??= this.flush().finally(() => {
        this.flushing = undefined
      })
    })
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0)
      const overlay = new Map<string, Resource | null>()
      const events: StoredEvent[] = []
      const lines: string[] = []
      const results: CommitResult[] = []
      let rv = this.rv
      for (const p of batch) {
        const full = `${p.coll}\u0000${p.key}`
        const cur = overlay.has(full)
          ? (overlay.get(full) ?? undefined)
          : this.objects.get(p.coll)?.get(p.key)
        if (
          p.expected === undefined
            ? cur !== undefined
            : cur === undefined || cur.metadata.resourceVersion !== p.expected
        ) {
          results.push({
            ok: false,
            reason: p.expected === undefined ? 'exists' : cur === undefined ? 'missing' : 'conflict',
          })
          continue
        }
        rv++
        const obj = deepFreeze({ ...p.obj, metadata: { ...p.obj.metadata, resourceVersion: String(rv) } })
        overlay.set(full, p.type === 'DELETED' ? null : obj)
        events.push(
          p.type === 'MODIFIED' && cur
            ? { rv, coll: p.coll, type: p.type, obj, old: cur }
            : { rv, coll: p.coll, type: p.type, obj },
        )
        lines.push(`${JSON.stringify({ rv, c: p.coll, t: p.type, o: obj })}\n`)
        results.push({ ok: true, rv })
      }
      try {
        if (lines.length > 0) {
          const wal = this.wal as FileHandle
          await wal.write(lines.join(''))
          await wal.datasync()
        }
      } catch (err) {
        // What is on disk is now unknown: refuse every later write rather than fork history.
        this.broken = ioError('writing the resource log', this.opts.dir, err)
        for (const p of batch) p.reject(this.broken)
        for (const p of this.queue.splice(0)) p.reject(this.broken)
        return
      }
      for (const e of events) this.apply(e)
      this.walRecords += events.length
      for (const [i, p] of batch.entries()) p.resolve(results[i] as CommitResult)
      this.waiters.notify(this.rv)
      if (this.walRecords >= this.compactEvery)
        await this.compact().catch((err) => {
          this.broken = ioError('writing a snapshot of the resources', this.opts.dir, err)
        })
    }
  }

  /** Applies a logged change to memory and the history. */
  private apply(e: StoredEvent): void {
    let coll = this.objects.get(e.coll)
    if (!coll) {
      coll = new Map()
      this.objects.set(e.coll, coll)
    }
    const key = `${e.obj.metadata.namespace}/${e.obj.metadata.name}`
    if (e.type === 'DELETED') coll.delete(key)
    else coll.set(key, e.obj)
    this.rv = e.rv
    this.hist.push(e)
    if (this.hist.length - this.histStart > this.historyEvents) {
      this.histStart++
      this.floor = (this.hist[this.histStart] as StoredEvent).rv - 1
      if (this.histStart > this.historyEvents) {
        this.hist = this.hist.slice(this.histStart)
        this.histStart = 0
      }
    }
  }

  /** Snapshot to a temporary file, fsync, rename over the old one, fsync the folder, restart the log. */
  private async compact(): Promise<void> {
    const tmp = join(this.opts.dir, `${SNAPSHOT}.tmp`)
    const fh = await open(tmp, 'w')
    try {
      let count = 0
      for (const coll of this.objects.values()) count += coll.size
      await fh.write(`${JSON.stringify({ format: FORMAT, rv: this.rv, count })}\n`)
      let chunk: string[] = []
      for (const [name, coll] of this.objects)
        for (const obj of coll.values()) {
          chunk.push(`${JSON.stringify({ c: name, o: obj })}\n`)
          if (chunk.length >= 512) {
            await fh.write(chunk.join(''))
            chunk = []
          }
        }
      await fh.write(chunk.join(''))
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, join(this.opts.dir, SNAPSHOT))
    await syncDir(this.opts.dir)
    await (this.wal as FileHandle).truncate(0)
    await (this.wal as FileHandle).sync()
    this.walRecords = 0
  }

  private async loadSnapshot(): Promise<number> {
    const path = join(this.opts.dir, SNAPSHOT)
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return 0
      throw ioError('reading the snapshot', path, err)
    }
    const lines = text.split('\n').filter((l) => l !== '')
    const header = parseLine(lines[0] ?? '', path, 1) as { format?: string; rv?: number; count?: number }
    if (header.format !== FORMAT || typeof header.rv !== 'number' || header.count !== lines.length - 1)
      throw ioError('reading the snapshot', path, `not a ${FORMAT} snapshot or incomplete`)
    for (let i = 1; i < lines.length; i++) {
      const { c, o } = parseLine(lines[i] as string, path, i + 1) as { c: string; o: Resource }
      let coll = this.objects.get(c)
      if (!coll) {
        coll = new Map()
        this.objects.set(c, coll)
      }
      coll.set(`${o.metadata.namespace}/${o.metadata.name}`, deepFreeze(o))
    }
    return header.rv
  }

  private async replayWal(after: number): Promise<void> {
    const path = join(this.opts.dir, WAL)
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        await writeFile(path, '')
        await syncDir(this.opts.dir)
        return
      }
      throw ioError('reading the resource log', path, err)
    }
    const end = text.lastIndexOf('\n') + 1
    // A torn last line: the write that held it was never acknowledged.
    if (end < text.length) await truncate(path, Buffer.byteLength(text.slice(0, end)))
    const lines = text.slice(0, end).split('\n')
    lines.pop()
    let line = 0
    for (const l of lines) {
      line++
      const rec = parseLine(l, path, line) as { rv: number; c: string; t: StoredEvent['type']; o: Resource }
      if (rec.rv <= after) continue
      if (rec.rv !== this.rv + 1)
        throw ioError(
          'reading the resource log',
          path,
          `line ${line}: resourceVersion ${rec.rv} after ${this.rv}`,
        )
      const old = this.objects.get(rec.c)?.get(`${rec.o.metadata.namespace}/${rec.o.metadata.name}`)
      const obj = deepFreeze(rec.o)
      this.apply(
        rec.t === 'MODIFIED' && old
          ? { rv: rec.rv, coll: rec.c, type: rec.t, obj, old }
          : { rv: rec.rv, coll: rec.c, type: rec.t, obj },
      )
      this.walRecords++
    }
  }

  private async lock(): Promise<void> {
    const path = join(this.opts.dir, 'LOCK')
    if (openDirs.has(this.opts.dir)) throw busy(this.opts.dir, process.pid)
    const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim())
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner))
      throw busy(this.opts.dir, owner)
    await writeFile(path, `${process.pid}\n`)
    openDirs.add(this.opts.dir)
    this.locked = true
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return errnoCode(err) === 'EPERM'
  }
}

function busy(dir: string, pid: number): ShoalError {
  return new ShoalError(
    'UNAVAILABLE',
    `the resource store in ${dir} is open in another process (pid ${pid}) or engine`,
  )
}

function parseLine(line: string, path: string, n: number): unknown {
  try {
    return JSON.parse(line)
  } catch {
    throw ioError('reading', path, `line ${n} is not JSON (the file is corrupt)`)
  }
}

function ioError(what: string, path: string, cause: unknown): ShoalError {
  const msg = cause instanceof Error ? cause.message : String(cause)
  return new ShoalError('IO_ERROR', `${what} in ${path}: ${msg}`, { cause })
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
