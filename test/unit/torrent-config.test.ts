import t from 'tap'
import { validateConfig } from '../../lib/config/index.js'
import { silentLogger } from '../../lib/log/index.js'
import { TorrentTuningConfig } from '../../lib/torrent/config.js'
import { TorrentEngine } from '../../lib/torrent/index.js'

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
