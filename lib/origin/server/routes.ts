/**
 * The origin's HTTP routes (docs/architecture.md §4; the protocol is fixed by lib/origin/client).
 * Handlers only translate HTTP to BlobService calls and back.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { z } from '../../config/index.js'
import { Digest } from '../../core/index.js'
import { ShoalError } from '../../errors/index.js'
import {
  parseJson,
  type RateLimiter,
  type Router,
  rateLimited,
  readBody,
  sendEmpty,
  sendJson,
  urlPath,
} from '../../http/index.js'
import type { BlobStore } from '../../store/index.js'
import { parsePushedWithin } from './gc.js'
import { checkNamespace } from './keys.js'
import { MAX_REPLICATE_BODY, ReplicateRequest, type Replication } from './replication.js'
import type { BlobService } from './service.js'

export interface RouteDeps {
  service: BlobService
  store: BlobStore
  /** The digest's owners (ring.ts), primary first. */
  owners: (digest: Digest) => string[]
  uploadChunkLimit: number
  /** A read of a cached blob starts (the cache does not evict it until the returned function is called). */
  reading: (digest: Digest) => () => void
  /** Copies committed blobs to the other owners; answers POST /blobs/:digest/replicate. */
  replication: Replication
  /** Per-client limit on upload starts (config rateLimits.push). */
  pushLimit: RateLimiter
}

const BLOB = '/namespace/:ns/blobs/:digest'

/** POST .../verify: what the reporter knows of the bad piece (logged only); may be empty. */
const VerifyBody = z.strictObject({
  piece: z.number().int().min(0).optional(),
  reporter: z.string().max(300).optional(),
})

export function registerRoutes(router: Router, deps: RouteDeps): void {
  const { service, store } = deps
  const target = (params: Record<string, string>) => ({
    ns: checkNamespace(params.ns as string),
    digest: Digest.parse(params.digest as string),
  })

  router.post(
    `${BLOB}/uploads`,
    rateLimited(deps.pushLimit, async ({ req, res, params, signal }) => {
      const { ns, digest } = target(params)
      const uid = await service.uploads.start(ns, digest, clientOf(req), signal)
      res.setHeader('location', urlPath`/namespace/${ns}/blobs/${digest}/uploads/${uid}`)
      sendJson(res, 202, { uid })
    }),
  )

  router.patch(`${BLOB}/uploads/:uid`, async ({ req, res, params, signal }) => {
    const { digest } = target(params)
    const range = parseContentRange(req.headers['content-range'])
    const length = range.end - range.start + 1
    if (length > deps.uploadChunkLimit) {
      throw new ShoalError(
        'PAYLOAD_TOO_LARGE',
        `chunk of ${length} bytes exceeds the limit of ${deps.uploadChunkLimit}; send smaller chunks`,
      )
    }
    const declared = req.headers['content-length']
    if (declared !== undefined && Number(declared) !== length) {
      throw new ShoalError(
        'SIZE_MISMATCH',
        `Content-Length ${declared} does not match Content-Range ${range.start}-${range.end}`,
      )
    }
    const at = { digest, client: clientOf(req) }
    const offset = await service.uploads.append(at, params.uid as string, range.start, req, length, signal)
    sendEmpty(res, 204, { range: `0-${offset - 1}` })
  })

  router.put(`${BLOB}/uploads/:uid`, async ({ req, res, params }) => {
    const { ns, digest } = target(params)
    const { size } = await service.uploads.commit(ns, digest, params.uid as string, clientOf(req))
    sendJson(res, 201, { digest: digest.toString(), size })
    // After the answer: the push does not wait for the other owners' copies.
    deps.replication.committed(ns, digest)
  })

  router.delete(`${BLOB}/uploads/:uid`, async ({ res, params }) => {
    target(params)
    await service.uploads.delete(params.uid as string)
    sendEmpty(res, 204)
  })

  router.get(BLOB, async ({ req, res, params }) => {
    const { ns, digest } = target(params)
    const head = req.method === 'HEAD'
    // A GET holds the blob before looking it up: the cache cannot evict it between the lookup
    // finding it and the read opening it.
    const release = head ? undefined : deps.reading(digest)
    try {
      await serveBlob(req, res, ns, digest, head)
    } finally {
      release?.()
    }
  })

  async function serveBlob(
    req: IncomingMessage,
    res: ServerResponse,
    ns: string,
    digest: Digest,
    head: boolean,
  ) {
    const where = await service.locate(ns, digest, head)
    if (!where) throw new ShoalError('BLOB_NOT_FOUND', `blob ${digest} is not stored in namespace ${ns}`)
    if (where.state === 'pending') {
      // Being fetched from the backend: HEAD tells the size, GET asks to come back.
      if (head) return sendEmpty(res, 202, { 'content-length': where.size, 'retry-after': 1 })
      res.setHeader('retry-after', '1')
      return sendJson(res, 202, {
        status: 'fetching',
        message: `${digest} is being fetched from the backend; retry shortly`,
      })
    }
    const range = parseRange(req.headers.range, where.size)
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'accept-ranges': 'bytes',
      'content-length': range ? range.end - range.start + 1 : where.size,
      etag: `"${digest.hex}"`,
    }
    if (range) headers['content-range'] = `bytes ${range.start}-${range.end}/${where.size}`
    if (head) return sendEmpty(res, range ? 206 : 200, headers)
    const body = store.createReadStream(digest, range)
    res.writeHead(range ? 206 : 200, headers)
    await pipeline(body, res)
  }

  router.get(`${BLOB}/metainfo`, async ({ res, params }) => {
    const { ns, digest } = target(params)
    const raw = await service.metaInfo(ns, digest)
    if (!raw) throw new ShoalError('BLOB_NOT_FOUND', `blob ${digest} is not stored in namespace ${ns}`)
    if (raw === 'pending') {
      res.setHeader('retry-after', '1')
      return sendJson(res, 202, {
        status: 'fetching',
        message: `${digest} is being fetched from the backend; retry shortly`,
      })
    }
    res.writeHead(200, { 'content-type': 'application/x-bittorrent', 'content-length': raw.length })
    res.end(raw)
  })

  // An agent got a bad piece from this origin (relayed by the tracker): re-hash and repair.
  router.post(`${BLOB}/verify`, async ({ req, res, params }) => {
    const { ns, digest } = target(params)
    // The body may be empty: a bare "re-check this blob".
    const raw = await readBody(req, 4096)
    const report: z.infer<typeof VerifyBody> = raw.length === 0 ? {} : parseJson(raw, VerifyBody)
    sendJson(res, 200, await service.verify(ns, digest, report))
  })

  router.delete(BLOB, async ({ res, params, query, signal }) => {
    const { ns, digest } = target(params)
    await service.deleteBlob(ns, digest, signal, parsePushedWithin(query.get('unlessPushedWithinMs')))
    sendEmpty(res, 204)
  })

  // Internal (origin to origin): hold a replica of the blob, copied from the origin `from`.
  router.post('/blobs/:digest/replicate', async ({ req, res, params }) => {
    const digest = Digest.parse(params.digest as string)
    const body = parseJson(await readBody(req, MAX_REPLICATE_BODY), ReplicateRequest)
    const state = await deps.replication.accept(digest, body)
    sendJson(res, state === 'fetching' ? 202 : 200, { state })
  })

  router.get('/blobs/:digest/locations', ({ res, params }) => {
    const digest = Digest.parse(params.digest as string)
    sendJson(res, 200, { locations: deps.owners(digest) })
  })
}

/** The client an upload counts against (maxOpenUploadsPerClient): its address. */
function clientOf(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? 'unknown'
}

/** `start-end` (inclusive), also accepting the `bytes start-end/total` form. */
export function parseContentRange(header: string | undefined): { start: number; end: number } {
  const m = /^(?:bytes[ =])?(\d{1,15})-(\d{1,15})(?:\/(?:\d{1,15}|\*))?$/.exec(header?.trim() ?? '')
  if (!m) {
    throw new ShoalError(
      'INVALID_RANGE',
      `a chunk needs a Content-Range header "start-end" (inclusive bytes); got "${header ?? ''}"`,
    )
  }
  const start = Number(m[1])
  const end = Number(m[2])
  if (end < start)
    throw new ShoalError('INVALID_RANGE', `Content-Range ${start}-${end} ends before it starts`)
  return { start, end }
}

/** A single `Range: bytes=a-b | a- | -n`; undefined means the whole blob. */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | undefined {
  if (header === undefined) return undefined
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim())
  const unsatisfiable = () =>
    new ShoalError(
      'INVALID_RANGE',
      `range "${header.slice(0, 100)}" cannot be served from a blob of ${size} bytes (one range, bytes=a-b)`,
      {
        details: { size },
      },
    )
  if (!m || (m[1] === '' && m[2] === '')) throw unsatisfiable()
  let start: number
  let end: number
  if (m[1] === '') {
    const suffix = Number(m[2])
    if (suffix === 0) throw unsatisfiable()
    start = Math.max(0, size - suffix)
    end = size - 1
  } else {
    start = Number(m[1])
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  }
  if (start >= size || end < start) throw unsatisfiable()
  return { start, end }
}
