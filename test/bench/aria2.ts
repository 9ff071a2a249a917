/**
 * The stock-client comparison: a swarm of aria2c processes at the same caps as Shoal, one seeder
 * holding the blob and N leechers, each bound to its own loopback address (127.0.0.X, so each
 * looks like a host of its own), all announcing to a Shoal tracker of their own (nothing of
 * Shoal's seeds in this swarm). Completion times come from `--on-bt-download-complete`.
 */
import { existsSync } from 'node:fs'
import { chmod, link, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ShoalError } from '../../lib/errors/index.js'
import { HttpClient } from '../../lib/http/index.js'
import { promSum } from './helpers.js'
import {
  cpuSeconds,
  distCmd,
  freePort,
  type Proc,
  type ProcGroup,
  peakRss,
  ROOT,
  waitReady,
} from './procs.js'

export const ARIA2C = '/usr/bin/aria2c'

export const aria2Available = () => existsSync(ARIA2C)

export interface Aria2Result {
  /** Seconds from the start to each leecher's completion (null: did not finish in time). */
  completion: Array<number | null>
  failures: string[]
  /** user + system CPU of the leechers over the run, and their highest peak RSS (for comparison). */
  leecherCpuSeconds: number
  leecherPeakRss: number
}

/** The flags every aria2c of the swarm shares: no DHT/LPD/PEX, trackers replaced by ours. */
function commonArgs(trackerUrl: string): string[] {
  return [
    '--no-conf=true',
    '--enable-dht=false',
    '--enable-dht6=false',
    '--bt-enable-lpd=false',
    '--enable-peer-exchange=false',
    '--disable-ipv6=true',
    '--file-allocation=none',
    '--allow-overwrite=true',
    '--auto-file-renaming=false',
    '--summary-interval=0',
    '--console-log-level=warn',
    // The .torrent announces to the herd's tracker; this swarm uses its own.
    '--bt-exclude-tracker=*',
    `--bt-tracker=${trackerUrl}`,
    // Seed until killed, as Shoal agents do; and never outlive this process.
    '--seed-ratio=0.0',
    `--stop-with-process=${process.pid}`,
  ]
}

export async function runAria2Swarm(opts: {
  dir: string
  procs: ProcGroup
  /** The .torrent (bencoded metainfo) of the blob. */
  torrent: Buffer
  /** The blob, named as the torrent's `name` in the seeder's folder. */
  file: string
  name: string
  leechers: number
  capBytesPerSec: number
  timeoutMs: number
}): Promise<Aria2Result> {
  if (opts.leechers > 250) throw new ShoalError('USAGE', 'aria2 swarm: at most 250 leechers (127.0.0.3–.252)')
  const { dir, procs } = opts
  await mkdir(join(dir, 'logs'), { recursive: true })
  await mkdir(join(dir, 'seed'), { recursive: true })
  const torrentFile = join(dir, 'blob.torrent')
  await writeFile(torrentFile, opts.torrent)
  await link(opts.file, join(dir, 'seed', opts.name))
  const doneLog = join(dir, 'done.log')
  await writeFile(doneLog, '')
  const hook = join(dir, 'on-complete.sh')
  // aria2 runs the hook with (GID, number of files, first file's path); %s%N is epoch in ns.
  await writeFile(hook, `#!/bin/sh\necho "$(date +%s%N) $3" >> '${doneLog}'\n`)
  await chmod(hook, 0o755)

  const trackerPort = await freePort()
  const trackerConfig = join(dir, 'tracker.yaml')
  // The herd's development intervals, so both swarms learn of new peers equally fast.
  const herdDev = { announceInterval: 5, minInterval: 2, peerTtlSeconds: 20 }
  await writeFile(
    trackerConfig,
    JSON.stringify({ extends: join(ROOT, 'config', 'tracker', 'base.yaml'), origins: [], ...herdDev }),
  )
  const tracker = procs.spawn(
    'aria2-tracker',
    process.execPath,
    [
      distCmd('shoal-tracker'),
      '--config',
      trackerConfig,
      '--port',
      String(trackerPort),
      '--host',
      '127.0.0.1',
    ],
    { log: join(dir, 'logs', 'tracker.log') },
  )
  const trackerBase = `http://127.0.0.1:${trackerPort}`
  await waitReady(tracker, trackerBase)
  const common = commonArgs(`${trackerBase}/announce`)
  const cap = String(opts.capBytesPerSec)

  const started: Proc[] = [tracker]
  try {
    const seeder = procs.spawn(
      'aria2-seeder',
      ARIA2C,
      [
        ...common,
        '--interface=127.0.0.2',
        `--listen-port=${await freePort()}`,
        `--dir=${join(dir, 'seed')}`,
        '--bt-seed-unverified=true',
        `--max-overall-upload-limit=${cap}`,
        torrentFile,
      ],
      { log: join(dir, 'logs', 'seeder.log') },
    )
    started.push(seeder)
    await waitForPeers(new HttpClient(trackerBase, { name: 'tracker' }), 1, seeder, 15_000)

    const t0 = Date.now()
    const leechDirs: string[] = []
    for (let i = 0; i < opts.leechers; i++) {
      const leechDir = join(dir, `leech-${i + 1}`)
      leechDirs.push(leechDir)
      await mkdir(leechDir, { recursive: true })
      started.push(
        procs.spawn(
          `aria2-leech-${i + 1}`,
          ARIA2C,
          [
            ...common,
            `--interface=127.0.0.${i + 3}`,
            `--listen-port=${await freePort()}`,
            `--dir=${leechDir}`,
            `--max-overall-download-limit=${cap}`,
            `--max-overall-upload-limit=${cap}`,
            `--on-bt-download-complete=${hook}`,
            torrentFile,
          ],
          { log: join(dir, 'logs', `leech-${i + 1}.log`) },
        ),
      )
    }
    const completion: Array<number | null> = leechDirs.map(() => null)
    const deadline = t0 + opts.timeoutMs
    while (Date.now() < deadline) {
      const lines = (await readFile(doneLog, 'utf8')).split('\n').filter(Boolean)
      for (const line of lines) {
        const [ns, path] = line.split(' ', 2)
        const i = leechDirs.findIndex((d) => path?.startsWith(`${d}/`))
        if (i >= 0) completion[i] ??= (Number(ns) / 1e6 - t0) / 1000
      }
      if (completion.every((c) => c !== null)) break
      if (started.slice(2).every((p) => !p.alive)) break
      await sleep(200)
    }
    const failures = completion.flatMap((c, i) =>
      c === null
        ? [`aria2-leech-${i + 1}: not complete (see ${join(dir, 'logs', `leech-${i + 1}.log`)})`]
        : [],
    )
    const leechers = started.slice(2)
    const leecherCpuSeconds = leechers.reduce((sum, p) => sum + (cpuSeconds(p.pid) ?? 0), 0)
    const leecherPeakRss = Math.max(0, ...leechers.map((p) => peakRss(p.pid) ?? 0))
    return { completion, failures, leecherCpuSeconds, leecherPeakRss }
  } finally {
    await procs.stop(started)
  }
}

async function waitForPeers(tracker: HttpClient, n: number, seeder: Proc, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!seeder.alive) throw new ShoalError('UNAVAILABLE', `aria2c seeder exited; see ${seeder.log}`)
    const text = await tracker
      .buffer('GET', '/metrics')
      .then((b) => b.toString('utf8'))
      .catch(() => '')
    if ((promSum(text, 'shoal_tracker_peers') ?? 0) >= n) return
    await sleep(200)
  }
  throw new ShoalError(
    'TIMEOUT',
    `the aria2c seeder did not announce within ${timeoutMs / 1000} s; see ${seeder.log}`,
  )
}
