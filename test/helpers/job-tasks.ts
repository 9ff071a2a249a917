/**
 * For tests of the agents' task worker: a resource API serving the job kinds (an in-process
 * ApiServer on a file store), reachable through a relay whose address stays the same while the
 * API behind it is stopped and started again; DistributionTask objects written as the herd's
 * job controller would; and a poll for a task's status with a deadline.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { ResourceClient } from '../../lib/apiserver/client/index.js'
import { KindRegistry } from '../../lib/apiserver/registry.js'
import { ApiServer, ApiServerConfigSchema } from '../../lib/apiserver/server/index.js'
import { validateConfig } from '../../lib/config/index.js'
import {
  DEFAULT_JOB_NAMESPACE,
  type DistributionTask,
  DistributionTaskKind,
  type TaskSpecT,
  type TaskStatusT,
} from '../../lib/jobs/kinds.js'
import { registerJobKinds } from '../../lib/jobs/register.js'
import { silentLogger } from '../../lib/log/index.js'

type Teardown = { teardown(fn: () => unknown): void }

/** The registry a herd with jobs serves (lib/jobs/register.ts). */
export function jobKinds(): KindRegistry {
  return registerJobKinds(new KindRegistry())
}

/**
 * A TCP relay on a loopback port of its own to `target` (changeable): `down()` cuts every
 * connection and refuses new ones (an apiserver that is gone), `up(target)` forwards again.
 */
export interface Relay {
  readonly address: string
  down(): void
  /**
   * The connections open now stay open but carry nothing more, either way (a peer gone without a
   * word: a partition); new connections are forwarded as usual.
   */
  freeze(): void
  up(target: string): void
  close(): Promise<void>
}

export async function startRelay(t: Teardown, target: string): Promise<Relay> {
  let to: URL | undefined = new URL(target)
  const open = new Set<Socket>()
  const pairs = new Set<[Socket, Socket]>()
  const server: Server = createServer((client) => {
    if (!to) {
      client.destroy()
      return
    }
    const up: Socket = connect(Number(to.port), to.hostname)
    open.add(client)
    open.add(up)
    const pair: [Socket, Socket] = [client, up]
    pairs.add(pair)
    const drop = () => {
      pairs.delete(pair)
      client.destroy()
      up.destroy()
      open.delete(client)
      open.delete(up)
    }
    client.on('error', drop).on('close', drop)
    up.on('error', drop).on('close', drop)
    client.pipe(up)
    up.pipe(client)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  const relay: Relay = {
    address: `127.0.0.1:${port}`,
    freeze() {
      for (const [client, up] of pairs) {
        client.unpipe(up)
        up.unpipe(client)
        client.pause()
        up.pause()
      }
      pairs.clear()
    },
    down() {
      to = undefined
      for (const s of open) s.destroy()
      open.clear()
    },
    up(target: string) {
      to = new URL(target)
    },
    close: () =>
      new Promise<void>((r) => {
        relay.down()
        server.close(() => r())
      }),
  }
  t.teardown(() => relay.close())
  return relay
}

export interface JobsApi {
  api: ApiServer
  relay: Relay
  /** What agents are configured with (stays the same across restart()). */
  address: string
  /** The test's own client: straight to the API (not through the relay the agents use). */
  client: ResourceClient<TaskSpecT, TaskStatusT>
  /** Stops the API (connections cut) and starts it again on the same store. */
  restart(opts?: { downMs?: number; whileDown?: () => Promise<void> }): Promise<void>
  stop(): Promise<void>
  start(): Promise<void>
}

export async function startJobsApi(t: Teardown, dir: string): Promise<JobsApi> {
  const make = () =>
    new ApiServer(
      validateConfig(ApiServerConfigSchema, {
        server: { host: '127.0.0.1', port: 0 },
        store: { type: 'file', dir: join(dir, 'apiserver') },
        watch: { heartbeatMs: 500 },
      }),
      { logger: silentLogger(), registry: jobKinds() },
    )
  let api = make()
  await api.start()
  const relay = await startRelay(t, api.url)
  const out: JobsApi = {
    api,
    relay,
    address: relay.address,
    client: new ResourceClient(api.url, DistributionTaskKind),
    async stop() {
      relay.down()
      await api.stop()
    },
    async start() {
      api = make()
      out.api = api
      await api.start()
      out.client = new ResourceClient(api.url, DistributionTaskKind)
      relay.up(api.url)
    },
    async restart(opts = {}) {
      await out.stop()
      await opts.whileDown?.()
      await out.start()
    },
  }
  t.teardown(() => out.api.stop())
  return out
}

/** A DistributionTask as the controller writes it (defaults filled by the kind's schema). */
export function taskInput(
  name: string,
  spec: Partial<TaskSpecT> & Pick<TaskSpecT, 'host' | 'action' | 'tag'>,
) {
  return {
    metadata: { name, labels: { 'shoal.io/distribution': spec.distribution ?? 'dist' } },
    spec: { distribution: 'dist', ...spec } as TaskSpecT,
  }
}

export async function createTask(
  jobs: JobsApi,
  name: string,
  spec: Partial<TaskSpecT> & Pick<TaskSpecT, 'host' | 'action' | 'tag'>,
): Promise<DistributionTask> {
  return jobs.client.create(DEFAULT_JOB_NAMESPACE, taskInput(name, spec))
}

/** Polls the task until `cond` holds of it; fails naming its last status after `ms`. */
export async function waitTask(
  jobs: JobsApi,
  name: string,
  cond: (task: DistributionTask) => boolean,
  ms = 30_000,
): Promise<DistributionTask> {
  const deadline = Date.now() + ms
  let last: DistributionTask | undefined
  for (;;) {
    last = await jobs.client.get(DEFAULT_JOB_NAMESPACE, name).catch(() => last)
    if (last && cond(last)) return last
    if (Date.now() > deadline)
      throw new Error(
        `task ${name} not as expected within ${ms} ms; last status ${JSON.stringify(last?.status)}`,
      )
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Final for the task's current generation: Succeeded or Failed. */
export function finished(task: DistributionTask): boolean {
  const st = task.status
  return (
    st !== undefined &&
    (st.phase === 'Succeeded' || st.phase === 'Failed') &&
    st.observedGeneration >= task.metadata.generation
  )
}

/** Changes a task's spec (a cancel, a rerun) as the controller would, retrying a stale read. */
export async function updateTaskSpec(
  jobs: JobsApi,
  name: string,
  change: (spec: TaskSpecT) => TaskSpecT,
): Promise<DistributionTask> {
  for (;;) {
    const cur = await jobs.client.get(DEFAULT_JOB_NAMESPACE, name)
    try {
      return await jobs.client.update(DEFAULT_JOB_NAMESPACE, {
        metadata: { ...cur.metadata },
        spec: change(cur.spec),
      })
    } catch (err) {
      if ((err as { code?: string }).code !== 'CONFLICT') throw err
    }
  }
}
