/**
 * Backend key layout: `blobs/<namespace>/sha256/<hex[0:2]>/<hex>`. The namespace is part of the
 * key so deleting a blob in one namespace never removes another namespace's copy; the local
 * cache is content-addressed and shared by all namespaces.
 */
import { type Digest, parseNamespace } from '../../core/index.js'

/** Validates a namespace from a request (it becomes part of backend keys). */
export const checkNamespace = parseNamespace

export function blobKey(ns: string, digest: Digest): string {
  return `blobs/${checkNamespace(ns)}/sha256/${digest.hex.slice(0, 2)}/${digest.hex}`
}
