/**
 * Streamed puts. A body that fits in one part is one PutObject; a larger one becomes a multipart
 * upload whose parts are cut from the stream as it arrives, so memory stays at about
 * partSize × (concurrency + 1) whatever the object's size. Written on the SDK's four multipart
 * calls rather than @aws-sdk/lib-storage's Upload: one more dependency avoided, each part is
 * retried by our own loop (withRetry) while we still hold it, and the announced size is
 * checked before CompleteMultipartUpload, so a short or long body never becomes visible.
 * S3 makes an object visible only when its PutObject or Complete succeeds: readers see the old
 * object or the whole new one, as the Backend contract requires.
 */
import { createHash } from 'node:crypto'
import { addAbortSignal, type Readable } from 'node:stream'
import type { S3Client } from '@aws-sdk/client-s3'
import { ShoalError } from '../../errors/index.js'
import type { Sdk } from './sdk.js'

/** S3 allows at most this many parts per upload. */
const MAX_PARTS = 10_000

export interface UploadTarget {
  sdk: Sdk
  client: S3Client
  bucket: string
  /** The full S3 key (prefix included). */
  key: string
  /** The key as the caller named it, for messages. */
  shown: string
  partSize: number
  concurrency: number
  /** Runs one request with the backend's retry policy. */
  retry<T>(
    what: string,
    op: (signal: AbortSignal | undefined) => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T>
}

export async function putObject(
  t: UploadTarget,
  body: Readable | Buffer,
  opts: { size?: number; signal?: AbortSignal },
): Promise<void> {
  const { size, signal } = opts
  // With a known size, parts grow so that even the largest object fits in S3's part limit.
  const partSize = size === undefined ? t.partSize : Math.max(t.partSize, Math.ceil(size / MAX_PARTS))
  if (Buffer.isBuffer(body)) {
    checkSize(t, body.length, size)
    if (body.length <= partSize) return putSingle(t, body, signal)
    return multipart(t, slices(body, partSize), signal)
  }
  if (signal) addAbortSignal(signal, body)
  const parts = cutParts(body, partSize, (total, final) => {
    if (size !== undefined && (total > size || (final && total !== size))) checkSize(t, total, size)
  })
  const first = await parts.next()
  if (first.done) return putSingle(t, Buffer.alloc(0), signal)
  const second = await parts.next()
  if (second.done) return putSingle(t, first.value, signal)
  return multipart(t, chain([first.value, second.value], parts), signal)
}

function checkSize(t: UploadTarget, got: number, expected: number | undefined): void {
  if (expected !== undefined && got !== expected)
    throw new ShoalError(
      'SIZE_MISMATCH',
      `object ${t.shown}: got ${got > expected ? 'more than ' : ''}${got} bytes, expected ${expected}`,
    )
}

/** Content-MD5 makes S3 reject a body damaged on the way instead of storing it. */
function md5(buf: Buffer): string {
  return createHash('md5').update(buf).digest('base64')
}

async function putSingle(t: UploadTarget, data: Buffer, signal?: AbortSignal): Promise<void> {
  const { PutObjectCommand } = t.sdk
  await t.retry(
    `put ${t.shown}`,
    (s) =>
      t.client.send(
        new PutObjectCommand({
          Bucket: t.bucket,
          Key: t.key,
          Body: data,
          ContentLength: data.length,
          ContentMD5: md5(data),
        }),
        { abortSignal: s },
      ),
    signal,
  )
}

async function multipart(
  t: UploadTarget,
  parts: AsyncIterable<Buffer> | Iterable<Buffer>,
  outer?: AbortSignal,
) {
  const sdk = t.sdk
  const created = await t.retry(
    `start multipart upload of ${t.shown}`,
    (s) =>
      t.client.send(new sdk.CreateMultipartUploadCommand({ Bucket: t.bucket, Key: t.key }), {
        abortSignal: s,
      }),
    outer,
  )
  const uploadId = created.UploadId
  if (!uploadId)
    throw new ShoalError('BACKEND_ERROR', `s3 put ${t.shown}: CreateMultipartUpload returned no upload id`)
  // One failed part stops the others at once; the outer signal stops them all.
  const stop = new AbortController()
  const signal = outer ? AbortSignal.any([outer, stop.signal]) : stop.signal
  const done: { PartNumber: number; ETag: string }[] = []
  const inFlight = new Set<Promise<void>>()
  let failure: unknown
  try {
    let number = 0
    for await (const part of parts) {
      if (failure !== undefined) break
      number++
      if (number > MAX_PARTS)
        throw new ShoalError(
          'BACKEND_ERROR',
          `s3 put ${t.shown}: more than ${MAX_PARTS} parts of ${t.partSize} bytes; raise partSizeBytes or give the size`,
        )
      const n = number
      const p: Promise<void> = t
        .retry(
          `put ${t.shown} part ${n}`,
          (s) =>
            t.client.send(
              new sdk.UploadPartCommand({
                Bucket: t.bucket,
                Key: t.key,
                UploadId: uploadId,
                PartNumber: n,
                Body: part,
                ContentLength: part.length,
                ContentMD5: md5(part),
              }),
              { abortSignal: s },
            ),
          signal,
        )
        .then(
          (out) => {
            done.push({ PartNumber: n, ETag: out.ETag ?? '' })
          },
          (err) => {
            failure ??= err
            stop.abort()
          },
        )
        .finally(() => inFlight.delete(p))
      inFlight.add(p)
      // Bounded memory: wait for a slot before reading the next part from the stream.
      while (inFlight.size >= t.concurrency) await Promise.race(inFlight)
    }
    await Promise.all(inFlight)
    if (failure !== undefined) throw failure
    done.sort((a, b) => a.PartNumber - b.PartNumber)
    await t.retry(
      `complete multipart upload of ${t.shown}`,
      (s) =>
        t.client.send(
          new sdk.CompleteMultipartUploadCommand({
            Bucket: t.bucket,
            Key: t.key,
            UploadId: uploadId,
            MultipartUpload: { Parts: done },
          }),
          { abortSignal: s },
        ),
      outer,
    )
  } catch (err) {
    // The first error is the put's error: parts stopped by it only fail with "aborted".
    failure ??= err
    stop.abort()
    await Promise.allSettled(inFlight)
    // Parts of an abandoned upload are billed until aborted: always try, even after an abort
    // of the put itself (hence no signal), with the usual retries.
    await t
      .retry(`abort multipart upload of ${t.shown}`, (s) =>
        t.client.send(
          new sdk.AbortMultipartUploadCommand({ Bucket: t.bucket, Key: t.key, UploadId: uploadId }),
          {
            abortSignal: s,
          },
        ),
      )
      .catch(() => {
        // Left for the bucket's lifecycle rule (AbortIncompleteMultipartUpload); the put's own error matters more.
      })
    throw failure
  }
}

/** Cuts a stream into parts of exactly `size` bytes (the last may be shorter); `check` sees running totals. */
async function* cutParts(
  body: Readable,
  size: number,
  check: (total: number, final: boolean) => void,
): AsyncGenerator<Buffer> {
  let pending: Buffer[] = []
  let pendingBytes = 0
  let total = 0
  for await (const raw of body) {
    let chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw as Uint8Array)
    total += chunk.length
    check(total, false)
    while (pendingBytes + chunk.length >= size) {
      const take = size - pendingBytes
      pending.push(chunk.subarray(0, take))
      yield Buffer.concat(pending, size)
      pending = []
      pendingBytes = 0
      chunk = chunk.subarray(take)
    }
    if (chunk.length > 0) {
      pending.push(chunk)
      pendingBytes += chunk.length
    }
  }
  check(total, true)
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes)
}

function* slices(buf: Buffer, size: number): Generator<Buffer> {
  for (let off = 0; off < buf.length; off += size) yield buf.subarray(off, off + size)
}

async function* chain(head: Buffer[], rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  yield* head
  for (let r = await rest.next(); !r.done; r = await rest.next()) yield r.value
}
