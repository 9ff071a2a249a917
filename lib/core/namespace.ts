/**
 * Namespaces group blobs and route them to backends. They become part of backend keys, so
 * they are validated strictly: 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit.
 */
import { ShoalError } from '../errors/index.js'
import { printable } from './digest.js'

export const DEFAULT_NAMESPACE = 'default'
export const NAMESPACE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

export function parseNamespace(ns: string): string {
  if (!NAMESPACE_RE.test(ns)) {
    throw new ShoalError(
      'BAD_REQUEST',
      `invalid namespace "${printable(ns)}": use 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit`,
    )
  }
  return ns
}
