/** Builds the configured ResourceStore: the embedded file store (default) or the shared Redis store. */
import { z } from '../../config/index.js'
import { RedisConfig } from '../../redis/index.js'
import { FileEngine } from './file-engine.js'
import { RedisEngine } from './redis-engine.js'
import { EngineResourceStore } from './resource-store.js'
import type { ResourceStore } from './types.js'

export const StoreConfig = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('file'),
    /** Folder of the snapshot and log; the herd defaults it to <dataDir>/apiserver. */
    dir: z.string().min(1),
    historyEvents: z.number().int().min(10).max(10_000_000).default(10_000),
    compactEveryRecords: z.number().int().min(1).max(10_000_000).default(1_000),
  }),
  z.strictObject({
    type: z.literal('redis'),
    redis: RedisConfig,
    historyEvents: z.number().int().min(10).max(10_000_000).default(10_000),
  }),
])
export type StoreConfigT = z.infer<typeof StoreConfig>

export function createResourceStore(config: StoreConfigT): ResourceStore {
  if (config.type === 'file')
    return new EngineResourceStore(
      'resource store (file)',
      new FileEngine({
        dir: config.dir,
        historyEvents: config.historyEvents,
        compactEveryRecords: config.compactEveryRecords,
      }),
    )
  return new EngineResourceStore(
    'resource store (redis)',
    new RedisEngine({ redis: config.redis, historyEvents: config.historyEvents }),
  )
}

export { FileEngine } from './file-engine.js'
export { RedisEngine } from './redis-engine.js'
export { EngineResourceStore } from './resource-store.js'
export type * from './types.js'
