/**
 * A resource API with the job kinds (file store in a temp folder, real HTTP on loopback) and a
 * job controller on it; an `agent` that writes task statuses the way a host's agent does.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ResourceClient } from '../../lib/apiserver/client/index.js'
import { KindRegistry } from '../../lib/apiserver/registry.js'
import { ApiServer, ApiServerConfigSchema } from '../../lib/apiserver/server/index.js'
import { validateConfig } from '../../lib/config/index.js'
import { JobController } from '../../lib/jobs/controller.js'
import {
  type Distribution,
  DistributionKind,
  type DistributionSpecT,
  type DistributionStatusT,
  type DistributionTask,
  DistributionTaskKind,
  type TaskSpecT,
  type TaskStatusT,
} from '../../lib/jobs/kinds.js'
import { registerJobKinds } from '../../lib/jobs/register.js'
import type { JobTransition } from '../../lib/jobs/summary.js'
import { silentLogger } from '../../lib/log/index.js'
import { until } from './until.js'

export const NS = 'default'

export { until }

export interface JobsRig {
  dir: string
  api: ApiServer
  url: string
  dists: ResourceClient<DistributionSpecT, DistributionStatusT>
  tasks: ResourceClient<TaskSpecT, TaskStatusT>
  controller: JobController
  transitions: JobTransition[]
  /** Stops the controller and the API, and starts both again on the same folder. */
  restart(between?: () => Promise<void>): Promise<void>
  startController(): Promise<JobController>
  stopController(): Promise<void>
  /** Writes a task's status as its agent would (observedGeneration = its generation). */
  report(
    name: string,
    status: Partial<TaskStatusT> & { phase: TaskStatusT['phase'] },
  ): Promise<DistributionTask>
  task(name: string): Promise<DistributionTask>
  dist(name: string): Promise<Distribution>
}

export async function startJobsRig(t: { teardown(fn: () => unknown): void }): Promise<JobsRig> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-jobs-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const makeApi = async (port: number) => {
    const api = new ApiServer(
      validateConfig(ApiServerConfigSchema, {
        server: { host: '127.0.0.1', port },
        store: { type: 'file', dir: join(dir, 'store') },
      }),
      { logger: silentLogger(), registry: registerJobKinds(new KindRegistry()) },
    )
    await api.start()
    return api
  }
  let api = await makeApi(0)
  const port = Number(new URL(api.url).port)
  const transitions: JobTransition[] = []
  let controller: JobController | undefined
  const rig: JobsRig = {
    dir,
    get api() {
      return api
    },
    url: api.url,
    dists: new ResourceClient(api.url, DistributionKind),
    tasks: new ResourceClient(api.url, DistributionTaskKind),
    get controller() {
      return controller as JobController
    },
    transitions,
    async startController() {
      controller = new JobController({
        url: api.url,
        token: api.internalToken,
        logger: silentLogger(),
        onTransition: (x) => transitions.push(x),
        retryMs: 100,
      })
      await controller.start()
      return controller
    },
    async stopController() {
      await controller?.stop()
      controller = undefined
    },
    async restart(between) {
      await rig.stopController()
      await between?.()
      await api.stop()
      api = await makeApi(port)
      await rig.startController()
    },
    async report(name, status) {
      // As an agent does: a write that lost a race with the controller is read again and retried.
      for (let i = 0; ; i++) {
        try {
          return await writeReport(name, status)
        } catch (err) {
          if ((err as { code?: string }).code !== 'CONFLICT' || i >= 20) throw err
        }
      }
    },
    task: (name) => rig.tasks.get(NS, name),
    dist: (name) => rig.dists.get(NS, name) as Promise<Distribution>,
  }
  const writeReport = async (
    name: string,
    status: Partial<TaskStatusT> & { phase: TaskStatusT['phase'] },
  ) => {
    const cur = await rig.tasks.get(NS, name)
    return rig.tasks.updateStatus(NS, {
      metadata: { name, resourceVersion: cur.metadata.resourceVersion },
      spec: cur.spec,
      status: {
        observedGeneration: cur.metadata.generation,
        attempts: (cur.status?.attempts ?? 0) + (status.phase === 'Running' ? 1 : 0),
        bytes: 0,
        seconds: 0,
        ...status,
      },
    })
  }
  await rig.startController()
  t.teardown(async () => {
    await controller?.stop()
    await api.stop()
  })
  return rig
}
