/**
 * POST /namespace/:ns/blobs/:digest/corrupt — an agent got a piece that failed SHA-1 from the
 * peer at `peer` (the address this tracker handed out). Agents know origins only by their peer
 * address; the tracker knows which of those are origins, and their HTTP servers, from its
 * configuration (never from what a peer claims). So it relays the report to that origin's
 * POST .../verify, which re-hashes its copy and restores it from the backend, and answers with
 * the origin's verdict (or its BLOB_CORRUPT). A peer that is not a configured origin: NOT_FOUND.
 */
import { z } from '../../config/index.js'
import { Digest, parseNamespace } from '../../core/index.js'
import { ShoalError, toShoalError } from '../../errors/index.js'
import { type Router, readJson, sendJson } from '../../http/index.js'
import type { Logger } from '../../log/index.js'
import type { Counter } from '../../metrics/index.js'
import type { OriginClient } from '../../origin/client/index.js'
import { HostPort, type OriginAddress, splitHostPort } from '../config.js'
import { normaliseIp } from './announce.js'
import { OriginSet } from './handout.js'

/** Re-hashing and restoring a large blob takes a while; the agent waits in the background. */
export const REPORT_TIMEOUT_MS = 10 * 60_000

const ReportBody = z.strictObject({
  /** The peer's address as handed out (ip:port). */
  peer: HostPort,
  piece: z.number().int().min(0).optional(),
})

export interface CorruptReportsOptions {
  origins: readonly OriginAddress[]
  client: (httpAddress: string) => OriginClient
  /** The tracker's metainfo cache: a corrupt blob's entry is dropped, so it is asked again. */
  forget: (digest: Digest) => void
  logger: Logger
  /** shoal_tracker_corrupt_reports_total{result}. */
  reports: Counter
}

export class CorruptReports {
  private resolved: Array<{ peers: OriginSet; http: string }> | undefined

  constructor(private readonly opts: CorruptReportsOptions) {}

  /** Resolves the origins' peer addresses (once, at start, as the handout does). */
  async start(): Promise<void> {
    const out: Array<{ peers: OriginSet; http: string }> = []
    for (const o of this.opts.origins)
      out.push({ peers: await OriginSet.resolve([o.peer], this.opts.logger), http: o.http })
    this.resolved = out
  }

  register(router: Router): void {
    router.post('/namespace/:ns/blobs/:digest/corrupt', async ({ req, res, params, signal }) => {
      const ns = parseNamespace(params.ns ?? '')
      const digest = Digest.parse(params.digest ?? '')
      const body = await readJson(req, ReportBody, 4096)
      const { host, port } = splitHostPort(body.peer)
      const ip = normaliseIp(host) ?? host
      const origin = this.resolved?.find((o) => o.peers.has(ip, port))
      const { reports, logger } = this.opts
      const fields = {
        digest: digest.toString(),
        peer: body.peer,
        piece: body.piece,
        from: req.socket.remoteAddress,
      }
      if (!origin) {
        reports.inc({ result: 'not_origin' })
        throw new ShoalError('NOT_FOUND', `peer ${body.peer} is not one of this tracker's origins`)
      }
      logger.warn(
        { ...fields, origin: origin.http },
        'bad piece from an origin reported; asking it to verify',
      )
      try {
        const verdict = await this.opts
          .client(origin.http)
          .verify(
            ns,
            digest,
            { piece: body.piece, reporter: req.socket.remoteAddress },
            { signal, timeoutMs: REPORT_TIMEOUT_MS },
          )
        if (verdict.state !== 'ok') this.opts.forget(digest)
        reports.inc({ result: verdict.state })
        sendJson(res, 200, verdict)
      } catch (err) {
        const e = toShoalError(err, 'UPSTREAM_ERROR')
        if (e.code === 'BLOB_CORRUPT') this.opts.forget(digest)
        reports.inc({ result: e.code === 'BLOB_CORRUPT' ? 'corrupt' : 'error' })
        logger.warn({ ...fields, origin: origin.http, code: e.code, err: e.message }, 'origin verify failed')
        throw e
      }
    })
  }
}
