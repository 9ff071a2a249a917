/**
 * Storage backends and their configuration. `type` picks the implementation. Paths in an fs
 * config are relative to the process's working folder.
 */
import { resolve } from 'node:path'
import { z } from '../config/index.js'
import { FsBackend } from './fs.js'
import { MemoryBackend } from './memory.js'
import { S3Backend, S3BackendConfig } from './s3/index.js'
import type { Backend } from './types.js'

export { FsBackend } from './fs.js'
export { MemoryBackend } from './memory.js'
export { S3Backend, S3BackendConfig, Secret } from './s3/index.js'
export {
  type Backend,
  checkKey,
  DEFAULT_LIST_LIMIT,
  type ListPage,
  MAX_KEY_BYTES,
  type ObjectStat,
} from './types.js'

export const FsBackendConfig = z.strictObject({
  type: z.literal('fs'),
  /** Folder holding the objects. */
  root: z.string().min(1).default('./data/backend'),
})

/** Keeps objects in process memory: tests and throw-away demos only, nothing survives a restart. */
export const MemoryBackendConfig = z.strictObject({
  type: z.literal('memory'),
})

export const BackendConfig = z.discriminatedUnion('type', [
  FsBackendConfig,
  MemoryBackendConfig,
  S3BackendConfig,
])
export type BackendConfig = z.output<typeof BackendConfig>

export function createBackend(config: BackendConfig): Backend {
  switch (config.type) {
    case 'fs':
      return new FsBackend(resolve(config.root))
    case 'memory':
      return new MemoryBackend()
    case 's3':
      return new S3Backend(config)
  }
}
