/** The origin's metrics (shoal_origin_*), registered once per registry. */
import { type Counter, counter, Gauge, type Registry } from '../../metrics/index.js'
import type { OpenUploads } from './open-uploads.js'

export interface OriginMetrics {
  committed: Counter
  uploadedBytes: Counter
  /** Bytes of upload chunks received (whether or not they were committed). */
  receivedBytes: Counter
  mismatches: Counter
  fetches: Counter
  /** Replicas copied from a peer origin (replication.ts), by result. */
  peerFetches: Counter
  /** Blobs found corrupt, by where the bad copy was (source: cache | backend). */
  corrupt: Counter
  /** Re-verifications agents asked for, by result (ok, restored, restoring, corrupt, error). */
  verifications: Counter
}

export function originMetrics(registry: Registry, uploads: OpenUploads): OriginMetrics {
  if (!registry.getSingleMetric('shoal_origin_open_uploads')) {
    new Gauge({
      name: 'shoal_origin_open_uploads',
      help: 'Uploads started and not yet committed, aborted or expired',
      registers: [registry],
      collect() {
        this.set(uploads.size)
      },
    })
  }
  return {
    committed: counter(registry, 'shoal_origin_uploads_committed_total', 'Uploads verified and stored'),
    uploadedBytes: counter(registry, 'shoal_origin_uploaded_bytes_total', 'Bytes of committed uploads'),
    mismatches: counter(
      registry,
      'shoal_origin_digest_mismatches_total',
      'Blobs whose sha256 did not match',
      ['source'],
    ),
    fetches: counter(
      registry,
      'shoal_origin_backend_fetches_total',
      'Blobs fetched from the backend into the cache',
      ['result'],
    ),
    peerFetches: counter(
      registry,
      'shoal_origin_peer_fetches_total',
      'Replicas copied from a peer origin into the cache, by result (error: fetched from the backend instead)',
      ['result'],
    ),
    corrupt: counter(
      registry,
      'shoal_origin_corrupt_blobs_total',
      'Blobs whose copy did not match their digest, by where (cache: re-verified after an agent report; backend: refused)',
      ['source'],
    ),
    verifications: counter(
      registry,
      'shoal_origin_verifications_total',
      'Blobs re-verified after an agent reported a bad piece, by result',
      ['result'],
    ),
    receivedBytes: counter(
      registry,
      'shoal_origin_upload_received_bytes_total',
      'Bytes of upload chunks received, committed or not',
    ),
  }
}
