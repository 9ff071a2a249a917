/**
 * The OneX control loop in the herd: one watch per kind on the in-process store (any change
 * wakes it), a resync timer (deletion timeouts, stale hosts), and one worker that reconciles
 * everything level-triggered on each wake: garbage collection of owned objects whose owner is
 * gone (a deleted MinerSet's Miners, a deleted Chain's Secret), Chains, MinerSets, Miners. A
 * write that loses a race (CONFLICT) is simply planned again on the next pass.
 */
import type { KindDefinition } from '../../apiserver/registry.js'
import type { ResourceStore } from '../../apiserver/store/types.js'
import { BuildIndexClient } from '../../build-index/client/index.js'
import { isShoalError, toShoalError } from '../../errors/index.js'
import { Lifecycle, type Service } from '../../lifecycle/index.js'
import type { Logger } from '../../log/index.js'
import { type Counter, counter, type Registry } from '../../metrics/index.js'
import { ProxyClient } from '../../proxy/client/index.js'
import {
  CHAIN_NAMESPACE,
  type Chain,
  FINALIZER_MINER,
  HOST_NAMESPACE,
  type Host,
  type Miner,
  type MinerSet,
  type Secret,
} from '../kinds.js'
import { ignoreNotFound, reconcileChain } from './chain.js'
import type { OnexControlConfig } from './config.js'
import { planMiner } from './miner.js'
import { type MinerSetPlan, planMinerSet } from './minerset.js'
import {
  ChainDefinition,
  HostDefinition,
  MinerDefinition,
  MinerSetDefinition,
  SecretDefinition,
} from './register.js'

export interface OnexControllerOptions {
  store: ResourceStore
  config: OnexControlConfig
  logger: Logger
  proxyUrl: string
  buildIndexUrl: string
  /** The daemon's registry: passes and failed reconciles are counted there. */
  metrics?: Registry
  now?: () => Date
}

export class OnexController implements Service {
  private readonly life: Lifecycle
  private readonly proxy: ProxyClient
  private readonly buildIndex: BuildIndexClient
  private readonly now: () => Date
  private abort: AbortController | undefined
  private dirty = true
  private wake: (() => void) | undefined
  private loops: Promise<unknown>[] = []
  private timer: NodeJS.Timeout | undefined
  /** Passes done (tests, logs). */
  passes = 0
  private readonly passCount: Counter | undefined
  private readonly failures: Counter | undefined

  constructor(private readonly opts: OnexControllerOptions) {
    this.proxy = new ProxyClient(opts.proxyUrl, { timeoutMs: 30_000, actor: 'onex-controller' })
    this.buildIndex = new BuildIndexClient(opts.buildIndexUrl, { timeoutMs: 30_000 })
    this.now = opts.now ?? (() => new Date())
    if (opts.metrics) {
      this.passCount = counter(
        opts.metrics,
        'shoal_onex_reconcile_passes_total',
        'OneX reconcile passes over every object',
      )
      this.failures = counter(
        opts.metrics,
        'shoal_onex_reconcile_failures_total',
        'OneX reconciles that failed and were tried again, by kind',
        ['kind'],
      )
    }
    this.life = new Lifecycle('onex controller', { start: () => this.begin(), stop: () => this.end() })
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal)
  }
  stop(): Promise<void> {
    return this.life.stop()
  }

  private kick = (): void => {
    this.dirty = true
    this.wake?.()
  }

  private async begin(): Promise<void> {
    this.abort = new AbortController()
    const signal = this.abort.signal
    const defs = [ChainDefinition, MinerSetDefinition, MinerDefinition, HostDefinition]
    this.loops = [...defs.map((def) => this.watchLoop(def, signal)), this.worker(signal)]
    this.timer = setInterval(this.kick, this.opts.config.resyncSeconds * 1000)
    this.timer.unref()
    this.opts.logger.info('onex controller started')
  }

  private async end(): Promise<void> {
    this.abort?.abort()
    clearInterval(this.timer)
    this.wake?.()
    await Promise.allSettled(this.loops)
  }

  private async watchLoop(def: KindDefinition, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        // From now: the worker lists everything itself; a watch only says "something changed".
        const events = await this.opts.store.watch(def, {
          resourceVersion: await this.opts.store.resourceVersion(),
          signal,
        })
        this.kick()
        for await (const ev of events) if (ev.type !== 'BOOKMARK') this.kick()
      } catch (err) {
        if (signal.aborted) return
        this.opts.logger.warn({ kind: def.kind, err: toShoalError(err).message }, 'onex watch ended; again')
        this.kick()
      }
      await pause(200, signal)
    }
  }

  private async worker(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (!this.dirty) await new Promise<void>((r) => (this.wake = r))
      this.wake = undefined
      if (signal.aborted) return
      this.dirty = false
      try {
        await this.pass()
      } catch (err) {
        const e = toShoalError(err)
        if (e.code !== 'CONFLICT') this.failures?.inc({ kind: 'pass' })
        if (e.code !== 'CONFLICT' && e.code !== 'NOT_FOUND')
          this.opts.logger.warn({ err: e.message, code: e.code }, 'onex reconcile failed; again')
        this.dirty = true
        await pause(e.code === 'CONFLICT' ? 20 : 500, signal)
      }
      this.passes++
      this.passCount?.inc()
    }
  }

  /** One level-triggered pass over everything. */
  async pass(): Promise<void> {
    const { store, config, logger } = this.opts
    const list = async <T>(def: KindDefinition, namespace?: string) =>
      (await store.list(def, namespace === undefined ? {} : { namespace })).items as T[]
    const chains = await list<Chain>(ChainDefinition, CHAIN_NAMESPACE)
    const sets = await list<MinerSet>(MinerSetDefinition)
    const miners = await list<Miner>(MinerDefinition)
    const hosts = await list<Host>(HostDefinition, HOST_NAMESPACE)
    const secrets = await list<Secret>(SecretDefinition, CHAIN_NAMESPACE)
    const now = this.now()

    // Background cascade: what a vanished owner controlled goes too.
    const uids = new Set([...chains, ...sets].map((o) => o.metadata.uid))
    const orphaned = (o: Miner | Secret) =>
      o.metadata.ownerReferences.some((r) => r.controller && !uids.has(r.uid)) &&
      !o.metadata.deletionTimestamp
    for (const m of miners.filter(orphaned))
      await store.delete(MinerDefinition, m.metadata.namespace, m.metadata.name).catch(ignoreNotFound)
    for (const s of secrets.filter(orphaned))
      await store.delete(SecretDefinition, s.metadata.namespace, s.metadata.name).catch(ignoreNotFound)

    for (const chain of chains)
      await reconcileChain(chain, {
        store,
        proxy: this.proxy,
        buildIndex: this.buildIndex,
        config,
        logger,
        now,
        miners,
        secrets,
      }).catch((err) => this.failed('Chain', chain.metadata.name, err))

    for (const set of sets) {
      const own = miners.filter((m) => m.metadata.namespace === set.metadata.namespace)
      await this.applyMinerSet(set, planMinerSet(set, own, now)).catch((err) => this.minerSetFailed(set, err))
    }

    const bound = [...miners]
    for (const miner of miners)
      await this.applyMiner(miner, chains, hosts, bound, now).catch((err) =>
        this.failed('Miner', miner.metadata.name, err),
      )
  }

  private async applyMinerSet(set: MinerSet, plan: MinerSetPlan): Promise<void> {
    const { store, logger } = this.opts
    const ns = set.metadata.namespace
    for (const m of plan.adopt)
      await store.update(MinerDefinition, ns, {
        ...m,
        metadata: {
          ...m.metadata,
          ownerReferences: [
            ...m.metadata.ownerReferences,
            {
              apiVersion: set.apiVersion,
              kind: set.kind,
              name: set.metadata.name,
              uid: set.metadata.uid,
              controller: true,
            },
          ],
        },
      })
    for (const input of plan.create) await store.create(MinerDefinition, ns, input)
    for (const m of plan.remove)
      await store.delete(MinerDefinition, ns, m.metadata.name).catch(ignoreNotFound)
    if (plan.create.length || plan.remove.length)
      logger.info(
        {
          minerset: `${ns}/${set.metadata.name}`,
          created: plan.create.length,
          deleted: plan.remove.map((m) => m.metadata.name),
        },
        'minerset resized',
      )
    // A set that works again loses the failure an earlier pass recorded.
    const { failureReason: _r, failureMessage: _m, ...status } = plan.status
    if (JSON.stringify(status) !== JSON.stringify(set.status ?? {}))
      await store.updateStatus(MinerSetDefinition, ns, { ...set, status })
  }

  /** A set whose Miners cannot be written (e.g. a template the API refuses) says so in its status. */
  private async minerSetFailed(set: MinerSet, err: unknown): Promise<void> {
    this.failed('MinerSet', set.metadata.name, err)
    const e = toShoalError(err)
    if (e.code === 'CONFLICT') return
    const status = {
      ...(set.status ?? {}),
      failureReason: e.code,
      failureMessage: e.message.slice(0, 1024),
    } as MinerSet['status']
    if (JSON.stringify(status) === JSON.stringify(set.status ?? {})) return
    await this.opts.store
      .updateStatus(MinerSetDefinition, set.metadata.namespace, { ...set, status })
      .catch(() => undefined) // the next pass tries again
  }

  private async applyMiner(
    miner: Miner,
    chains: Chain[],
    hosts: Host[],
    bound: Miner[],
    now: Date,
  ): Promise<void> {
    const { store, config, logger } = this.opts
    const chain = chains.find((c) => c.metadata.name === miner.spec.chainName)
    const step = planMiner(miner, {
      chain,
      hosts,
      miners: bound,
      types: config.minerTypes,
      hostStaleSeconds: config.hostStaleSeconds,
      now,
    })
    const ns = miner.metadata.namespace
    const meta = miner.metadata
    if (step.type === 'addFinalizer')
      await store.update(MinerDefinition, ns, {
        ...miner,
        metadata: { ...meta, finalizers: [...meta.finalizers, FINALIZER_MINER] },
      })
    else if (step.type === 'releaseFinalizer') {
      await store.update(MinerDefinition, ns, {
        ...miner,
        metadata: { ...meta, finalizers: meta.finalizers.filter((f) => f !== FINALIZER_MINER) },
      })
      logger.info({ miner: `${ns}/${meta.name}`, reason: step.reason }, 'miner released')
    } else if (step.type === 'bind') {
      const updated = (await store.update(MinerDefinition, ns, {
        ...miner,
        spec: { ...miner.spec, hostName: step.hostName },
      })) as Miner
      await store.updateStatus(MinerDefinition, ns, { ...updated, status: step.status })
      // The next Miner of this pass sees this one's place taken.
      bound[bound.indexOf(miner)] = updated
    } else if (step.type === 'status')
      await store.updateStatus(MinerDefinition, ns, { ...miner, status: step.status })
  }

  /**
   * A lost race is tried again at once; anything else waits for the resync timer, so one
   * object that keeps failing neither spins the loop nor blocks the others.
   */
  private failed(kind: string, name: string, err: unknown): void {
    if (isShoalError(err, 'CONFLICT')) {
      this.dirty = true
      return
    }
    this.failures?.inc({ kind })
    this.opts.logger.warn({ kind, name, err: toShoalError(err).message }, 'onex reconcile failed')
  }
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms)
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t)
        resolve()
      },
      { once: true },
    )
  })
}
