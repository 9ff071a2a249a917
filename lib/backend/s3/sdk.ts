/**
 * Loads @aws-sdk/client-s3 on first use. Only lib/backend/s3 imports the SDK, and only
 * dynamically: it costs about 0.3 s of start-up, which every CLI and daemon that never talks
 * to S3 would otherwise pay.
 */
import type * as ClientS3 from '@aws-sdk/client-s3'

export type Sdk = typeof ClientS3

let loading: Promise<Sdk> | undefined

export function loadSdk(): Promise<Sdk> {
  loading ??= import('@aws-sdk/client-s3')
  return loading
}

/**
 * The SDK warns on every start under Node < 22 that its releases after January 2027 will need
 * Node 22. package.json pins the SDK to an exact release that supports Node 20, so the warning
 * does not apply to us; the SDK reads this switch when a client is constructed (not at import),
 * so setting it just before is enough. An operator's own value is kept.
 */
export function silenceNodeVersionWarning(): void {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
}
