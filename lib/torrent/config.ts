/**
 * The engine's tunables as a config section, for the agent's and the origin's `peer` blocks:
 * the same names as EngineTuning, so a validated section can be spread into EngineOptions
 * (`new TorrentEngine({ ...config.peer, role, peerSource, logger })`). Every key is optional:
 * an absent key takes the engine's default (DEFAULTS in types.ts), so the defaults live in one
 * place and a config file only names what it changes.
 */
import { z } from '../config/index.js'
import { type EngineTuning, validBlockSize } from './types.js'

const ms = () => z.number().int().min(1)

export const TorrentTuningConfig = z.strictObject({
  maxConnectionsPerTorrent: z.number().int().min(1).max(1000).optional(),
  maxConnections: z.number().int().min(1).max(100_000).optional(),
  maxConnectionsPerIp: z.number().int().min(1).max(100_000).optional(),
  maxConnectionsPerIpPerTorrent: z.number().int().min(1).max(1000).optional(),
  maxPendingPerIp: z.number().int().min(1).max(100_000).optional(),
  incomingHandshakeTimeoutMs: ms().optional(),
  blockSize: z
    .number()
    .int()
    .refine(validBlockSize, 'blockSize must be a power of two from 16384 (16 KiB) to 1048576 (1 MiB)')
    .optional(),
  pipelineDepth: z.number().int().min(1).max(2000).optional(),
  pipelineQueueMs: ms().optional(),
  requestTimeoutMs: ms().optional(),
  stallStrikes: z.number().int().min(1).optional(),
  connectTimeoutMs: ms().optional(),
  handshakeTimeoutMs: ms().optional(),
  firstMessageTimeoutMs: ms().optional(),
  seedIdleTimeoutMs: ms().optional(),
  leechIdleTimeoutMs: ms().optional(),
  banMs: ms().optional(),
  originBanMs: ms().optional(),
  uploadSlots: z.number().int().min(1).max(1000).optional(),
  optimisticUnchokeMs: ms().optional(),
  slotIdleMs: ms().optional(),
  idlePeerEvictMs: ms().optional(),
  originServeOnceMs: z.number().int().min(0).optional(),
  hashOnWorker: z.boolean().optional(),
})

export type TorrentTuning = z.infer<typeof TorrentTuningConfig>

// The section is an EngineTuning: adding a key here without adding it to the engine fails to compile.
const _sameKeys: EngineTuning = {} as TorrentTuning
void _sameKeys
