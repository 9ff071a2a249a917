/**
 * What the engine's integration tests share: a random blob with its metainfo, and a started
 * TorrentEngine on loopback that stops when the test ends. SHOAL_TEST_LOG=1 logs the engines
 * at debug level.
 */
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { MetaInfo } from '../../lib/core/index.js'
import { createLogger, type Logger, silentLogger } from '../../lib/log/index.js'
import {
  type AnnounceResponse,
  type EngineOptions,
  type PeerSource,
  TorrentEngine,
} from '../../lib/torrent/index.js'
import { tempDir } from './files.js'

type Teardown = { teardown(fn: () => unknown): void }

export const testLog: Logger = process.env.SHOAL_TEST_LOG ? createLogger({ level: 'debug' }) : silentLogger()

/** `size` random bytes in a temp file, and their metainfo with `pieceLength` pieces. */
export async function makeTorrent(
  t: Teardown,
  size: number,
  pieceLength: number,
): Promise<{ meta: MetaInfo; data: Buffer }> {
  const dir = await tempDir(t, 'shoal-torrent-')
  const data = randomBytes(size)
  const path = join(dir, 'blob')
  await writeFile(path, data)
  const meta = await MetaInfo.create(path, {
    name: 'blob',
    announce: 'http://127.0.0.1:1/announce',
    size,
    pieceLength,
  })
  return { meta, data }
}

/** A started engine on 127.0.0.1 (any port), stopped at teardown. */
export async function startEngine(
  t: Teardown,
  role: 'origin' | 'agent',
  source: PeerSource,
  extra: Partial<EngineOptions> = {},
): Promise<TorrentEngine> {
  const e = new TorrentEngine({
    role,
    host: '127.0.0.1',
    port: 0,
    peerSource: source,
    logger: testLog,
    ...extra,
  })
  await e.start()
  t.teardown(() => e.stop())
  return e
}

/** A peer source that hands out loopback peers at the ports `list` gives, as a tracker would. */
export class Peers implements PeerSource {
  constructor(private readonly list: () => Array<{ port: number }>) {}
  async announce(): Promise<AnnounceResponse> {
    return { interval: 60, peers: this.list().map((e) => ({ ip: '127.0.0.1', port: e.port })) }
  }
}

/** A peer source with no peers: the engine only takes incoming connections. */
export const nobody = new Peers(() => [])

/** Polls `cond` until it holds or `ms` passed; whether it held (a deadline, not a measurement). */
export async function until(cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await cond()) return true
    await new Promise((r) => setTimeout(r, 20))
  }
  return cond()
}
