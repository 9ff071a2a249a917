/**
 * The job controller as a part of the herd: started after the resource API (it needs the bound
 * port), talking to it over loopback with the API's in-process token, stopped before it.
 *
 * It runs only while this herd holds the Lease `shoal-system/job-controller` (lib/lease): herds
 * sharing one store (Redis) elect one controller; the others stand by and take over within
 * the lease's duration when it stops or fails to renew. A herd alone takes the lease at start.
 */
import { ResourceClient } from '../apiserver/client/index.js'
import type { ApiServer } from '../apiserver/server/index.js'
import {
  LEASE_NAMESPACE,
  LeaderElected,
  type LeaderElectionOptions,
  LeaseKind,
  type LeaseSpecT,
} from '../lease/index.js'
import type { Part } from '../lifecycle/index.js'
import { JobController, type JobControllerOptions } from './controller.js'

/** The Lease the herds' job controllers are elected on. */
export const JOB_CONTROLLER_LEASE = 'job-controller'

/** What a herd's caller may set: the event log's seam, and the election's timings (tests). */
export type JobsPartOptions = Pick<JobControllerOptions, 'onTransition'> & {
  leaderElection?: Partial<
    Pick<
      LeaderElectionOptions,
      'identity' | 'leaseDurationSeconds' | 'renewEveryMs' | 'renewDeadlineMs' | 'retryEveryMs'
    >
  >
}

export function jobControllerPart(
  apiserver: ApiServer,
  opts: Omit<JobControllerOptions, 'url' | 'token'> & Pick<JobsPartOptions, 'leaderElection'>,
): {
  part: Part
  controller: () => JobController | undefined
  election: () => LeaderElected<JobController> | undefined
} {
  let elected: LeaderElected<JobController> | undefined
  const { leaderElection, ...controllerOpts } = opts
  const part: Part = () => {
    const url = loopbackUrl(apiserver.url)
    const token = apiserver.internalToken
    elected = new LeaderElected(
      {
        client: new ResourceClient<LeaseSpecT, never>(url, LeaseKind, { token, timeoutMs: 10_000 }),
        namespace: LEASE_NAMESPACE,
        name: JOB_CONTROLLER_LEASE,
        logger: opts.logger,
        ...leaderElection,
      },
      () => new JobController({ ...controllerOpts, url, token }),
    )
    return elected
  }
  return { part, controller: () => elected?.service, election: () => elected }
}

/** The API's own URL, with a wildcard bind address (0.0.0.0, ::) replaced by loopback. */
export function loopbackUrl(url: string): string {
  const u = new URL(url)
  if (u.hostname === '0.0.0.0') u.hostname = '127.0.0.1'
  else if (u.hostname === '[::]') u.hostname = '[::1]'
  return u.toString().replace(/\/$/, '')
}
