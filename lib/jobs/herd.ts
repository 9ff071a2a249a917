/**
 * The job controller as a part of the herd: started after the resource API (it needs the bound
 * port), talking to it over loopback with the API's in-process token, stopped before it.
 */
import type { ApiServer } from '../apiserver/server/index.js'
import type { Part } from '../lifecycle/index.js'
import { JobController, type JobControllerOptions } from './controller.js'

export function jobControllerPart(
  apiserver: ApiServer,
  opts: Omit<JobControllerOptions, 'url' | 'token'>,
): { part: Part; controller: () => JobController | undefined } {
  let controller: JobController | undefined
  const part: Part = () => {
    controller = new JobController({
      ...opts,
      url: loopbackUrl(apiserver.url),
      token: apiserver.internalToken,
    })
    return controller
  }
  return { part, controller: () => controller }
}

/** The API's own URL, with a wildcard bind address (0.0.0.0, ::) replaced by loopback. */
export function loopbackUrl(url: string): string {
  const u = new URL(url)
  if (u.hostname === '0.0.0.0') u.hostname = '127.0.0.1'
  else if (u.hostname === '[::]') u.hostname = '[::1]'
  return u.toString().replace(/\/$/, '')
}
