/** Helpers every Backend implementation shares, so they agree on edge cases (the contract suite checks). */
import { ShoalError } from '../errors/index.js'
import { MAX_KEY_BYTES } from './types.js'

/** A list prefix: '' (everything) or the start of a key; same character rules as keys. */
export function checkPrefix(prefix: string): void {
  if (typeof prefix !== 'string') throw new ShoalError('BAD_REQUEST', 'backend list prefix must be a string')
  if (Buffer.byteLength(prefix) > MAX_KEY_BYTES)
    throw new ShoalError('BAD_REQUEST', `backend list prefix longer than ${MAX_KEY_BYTES} bytes`)
  for (let i = 0; i < prefix.length; i++) {
    const c = prefix.charCodeAt(i)
    if (c < 0x20 || c === 0x7f)
      throw new ShoalError('BAD_REQUEST', 'backend list prefix contains control characters')
  }
}

/**
 * Resolves an optional inclusive byte range against an object of `size` bytes. No range means
 * the whole object (also when it is empty); `end` past the end is clamped; a range that starts
 * at or after the end, or ends before it starts, is INVALID_RANGE.
 */
export function resolveRange(
  size: number,
  opts: { start?: number; end?: number },
  key: string,
): { start: number; end: number } {
  if (opts.start === undefined && opts.end === undefined) return { start: 0, end: size - 1 }
  const start = opts.start ?? 0
  const end = Math.min(opts.end ?? size - 1, size - 1)
  if (
    !Number.isSafeInteger(start) ||
    start < 0 ||
    start >= size ||
    end < start ||
    (opts.end !== undefined && !Number.isSafeInteger(opts.end))
  ) {
    throw new ShoalError(
      'INVALID_RANGE',
      `range ${opts.start ?? ''}-${opts.end ?? ''} is outside object ${key} of ${size} bytes`,
      {
        details: { size },
      },
    )
  }
  return { start, end }
}
