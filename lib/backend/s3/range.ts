/**
 * HTTP lets a server ignore a Range header (200 with the whole object) or answer a wider range
 * than asked; some S3-compatible servers do (s3rver treats "bytes=0-0" as "bytes=0-"). Rather
 * than hand the caller extra bytes, the answer's Content-Range is compared with the request and
 * the surplus is cut off here.
 */
import { type Readable, Transform } from 'node:stream'
import { ShoalError } from '../../errors/index.js'

/** The bytes an answer holds: from Content-Range, else (a plain 200) the whole object. */
export function answeredRange(
  contentRange: string | undefined,
  contentLength: number | undefined,
): { start: number; end: number } | undefined {
  if (contentRange) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange.trim())
    return m ? { start: Number(m[1]), end: Number(m[2]) } : undefined
  }
  return contentLength === undefined ? undefined : { start: 0, end: contentLength - 1 }
}

/**
 * `body` holds bytes got.start..got.end; the caller asked for want.start..want.end (end
 * undefined: to the end). Returns a stream of exactly the asked bytes.
 */
export function trimToRange(
  body: Readable,
  got: { start: number; end: number },
  want: { start: number; end?: number | undefined },
  key: string,
): Readable {
  const wantEnd = Math.min(want.end ?? got.end, got.end)
  if (got.start === want.start && got.end === wantEnd) return body
  if (got.start > want.start)
    throw new ShoalError(
      'BACKEND_ERROR',
      `s3 get ${key}: asked for bytes from ${want.start}, the server answered from ${got.start}`,
    )
  let skip = want.start - got.start
  let left = wantEnd - want.start + 1
  const trim = new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (left === 0) return done()
      let c = chunk
      if (skip > 0) {
        const n = Math.min(skip, c.length)
        skip -= n
        c = c.subarray(n)
      }
      if (left > 0 && c.length > 0) {
        const out = c.subarray(0, left)
        left -= out.length
        this.push(out)
      }
      // Everything asked for is out: stop reading the rest of the surplus.
      if (left === 0) {
        this.push(null)
        body.unpipe(trim)
        body.destroy()
      }
      done()
    },
  })
  body.on('error', (err) => trim.destroy(err))
  return body.pipe(trim)
}
