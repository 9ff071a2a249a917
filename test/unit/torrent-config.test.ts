import { readFileSync } from 'node:fs'
import t from 'tap'
import { validateConfig } from '../../lib/config/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { TorrentEngine } from '../../lib/torrent/index.js'
import { TorrentTuningConfig, TUNING_DEFAULTS } from '../../lib/torrent/tuning.js'

t.test('engine tuning section: optional keys, validated, spread into the engine', async (t) => {
  t.same(validateConfig(TorrentTuningConfig, {}), {}, 'every key is optional (engine defaults apply)')
  const tuned = validateConfig(TorrentTuningConfig, {
    blockSize: 65536,
    uploadSlots: 8,
    seedIdleTimeoutMs: 1000,
  })
  t.same(tuned, { blockSize: 65536, uploadSlots: 8, seedIdleTimeoutMs: 1000 })
  t.throws(() => validateConfig(TorrentTuningConfig, { blockSize: 100_000 }), { code: 'CONFIG_INVALID' })
  t.throws(
    () => validateConfig(TorrentTuningConfig, { uploadSlot: 8 }),
    /uploadSlot/,
    'a misspelt key is an error',
  )
  const engine = new TorrentEngine({
    ...tuned,
    role: 'agent',
    port: 0,
    logger: silentLogger(),
    peerSource: { announce: async () => ({ interval: 60, peers: [] }) },
  })
  t.ok(engine, 'a validated section is valid engine options')
  t.throws(
    () =>
      new TorrentEngine({
        blockSize: 3000,
        role: 'agent',
        port: 0,
        logger: silentLogger(),
        peerSource: { announce: async () => ({ interval: 60, peers: [] }) },
      }),
    { code: 'CONFIG_INVALID' },
    'the engine refuses a bad block size too',
  )
})

t.test('engine tuning section: the per-address limits and the choker timings', async (t) => {
  const keys = {
    maxConnectionsPerIp: 400,
    maxConnectionsPerIpPerTorrent: 50,
    maxPendingPerIp: 256,
    incomingHandshakeTimeoutMs: 5000,
    slotIdleMs: 5000,
    idlePeerEvictMs: 30000,
  }
  t.same(validateConfig(TorrentTuningConfig, keys), keys)
  for (const key of [
    'maxConnectionsPerIp',
    'maxConnectionsPerIpPerTorrent',
    'maxPendingPerIp',
    'slotIdleMs',
  ]) {
    t.throws(
      () => validateConfig(TorrentTuningConfig, { [key]: 0 }),
      { code: 'CONFIG_INVALID' },
      `${key} ≥ 1`,
    )
  }
})

t.test('every tunable is shown with its default in both base configs (one table: tuning.ts)', async (t) => {
  // originServeOnceMs only acts on an origin's engine (serveOnceFor in torrent.ts).
  const originOnly = new Set(['originServeOnceMs'])
  for (const component of ['agent', 'origin']) {
    const file = readFileSync(new URL(`../../config/${component}/base.yaml`, import.meta.url), 'utf8')
    // The peer: block, up to the next top-level key.
    const text = /^peer:.*\n(?:[ #].*\n|\n)*/m.exec(file)?.[0] ?? ''
    t.ok(text, `config/${component}/base.yaml has a peer: block`)
    for (const key of Object.keys(TUNING_DEFAULTS) as Array<keyof typeof TUNING_DEFAULTS>) {
      if (component === 'agent' && originOnly.has(key)) continue
      const line = new RegExp(`^\\s*#?\\s*${key}: (\\S+)`, 'm').exec(text)
      if (!line) {
        t.fail(`config/${component}/base.yaml does not show ${key}`)
        continue
      }
      t.equal(String(line[1]), String(TUNING_DEFAULTS[key]), `${component} base.yaml: ${key}`)
    }
  }
})

t.test('the engine checks a tunable given in code with the config schema', async (t) => {
  const engine = (tuning: Record<string, unknown>) =>
    new TorrentEngine({
      ...tuning,
      role: 'agent',
      port: 0,
      logger: silentLogger(),
      peerSource: { announce: async () => ({ interval: 60, peers: [] }) },
    })
  t.throws(() => engine({ uploadSlots: 0 }), { code: 'CONFIG_INVALID', message: /uploadSlots=0/ })
  t.throws(() => engine({ hashOnWorker: 'yes' }), { code: 'CONFIG_INVALID', message: /hashOnWorker/ })
  t.ok(engine({ originServeOnceMs: 0 }), '0 turns serve-once off and is valid')
})
