/**
 * `GET /bandwidth` and `PUT /bandwidth` on a daemon's HTTP API (the agent's, the origin's):
 * the caps are changed at run time without a restart. The body of PUT is validated strictly
 * (an unknown key is a 400 naming it) and takes the units the config takes ("8MiB", "100MB/s",
 * "800Mbit/s"); absent keys stay as they are. A cap below the host's floor
 * (bandwidth.apiFloorBytesPerSec, 64 KiB/s by default) is refused with 400; 0 (unlimited) is
 * always accepted. Both answer the snapshot of HostBandwidth.
 */
import { ShoalError } from '../errors/index.js'
import { type Router, readJson, sendJson } from '../http/index.js'
import { BandwidthUpdate } from './config.js'
import type { HostBandwidth } from './host.js'

/** The body is three numbers or short strings. */
const BODY_LIMIT = 4096

export function registerBandwidthRoutes(router: Router, bandwidth: HostBandwidth): void {
  router.get('/bandwidth', ({ res }) => {
    sendJson(res, 200, bandwidth.snapshot())
  })
  router.put('/bandwidth', async ({ req, res, log }) => {
    const update = await readJson(req, BandwidthUpdate, BODY_LIMIT)
    for (const key of ['egressBytesPerSec', 'ingressBytesPerSec'] as const) {
      const rate = update[key]
      if (rate !== undefined && rate !== 0 && rate < bandwidth.apiFloor) {
        throw new ShoalError(
          'BAD_REQUEST',
          `${key} ${rate} is below the floor of ${bandwidth.apiFloor} bytes/s (bandwidth.apiFloorBytesPerSec); set at least that, or 0 for unlimited`,
        )
      }
    }
    bandwidth.setRates(update)
    const now = bandwidth.snapshot()
    log.info(
      {
        egressBytesPerSec: now.egressBytesPerSec,
        ingressBytesPerSec: now.ingressBytesPerSec,
        burstBytes: now.burstBytes,
      },
      'bandwidth caps changed through the API',
    )
    sendJson(res, 200, now)
  })
}
