/**
 * One Miner on this host, as a lifecycle Service (lib/lifecycle). start(): pull the image and the
 * genesis by digest (sha256 checked), unpack the image, write the static-nodes whitelist, start
 * the node process from the image's manifest with port 0 and wait for its port file (so its
 * address is the kernel's choice, never a guess). Then: GET /health every healthIntervalMs
 * (PodHealthy), kill after livenessFailures failures in a row, restart per restartPolicy with
 * exponential backoff when the process ends. stop(): SIGTERM, SIGKILL after
 * podDeletionTimeoutSeconds. Every change of the status is reported (a whole snapshot).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { type FileHandle, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { validateConfig } from '../../config/index.js'
import { ShoalError, toShoalError } from '../../errors/index.js'
import { HttpClient } from '../../http/index.js'
import { Lifecycle, type Service } from '../../lifecycle/index.js'
import { type Logger, silentLogger } from '../../log/index.js'
import {
  EnodeUrl,
  type MinerAssignment,
  MinerAssignmentSchema,
  type MinerAssignmentT,
  type MinerCondition,
  type MinerNodeStatus,
  type PullBlob,
  type StatusReporter,
} from './assignment.js'
import { type NodeRunnerConfig, NodeRunnerConfigSchema, type NodeRunnerConfigT } from './config.js'
import { type PreparedImage, prepareImage, pullVerified, renderCommand, verifyFileDigest } from './image.js'
import { condition, parsePortFile, signalGroup } from './process.js'

export interface NodeRunnerDeps {
  config: NodeRunnerConfig
  pullBlob: PullBlob
  report?: StatusReporter
  logger?: Logger
}

interface Running {
  child: ChildProcess
  exited: Promise<void>
  health?: HttpClient
  healthyOnce: boolean
  /** Until its port file is read: an exit then is #launch's failure to handle, not a crash. */
  launching: boolean
}

const PORT_FILE_POLL_MS = 25

export class NodeRunner implements Service {
  readonly assignment: MinerAssignmentT
  readonly nodeId: string
  readonly #config: NodeRunnerConfigT
  readonly #deps: NodeRunnerDeps
  readonly #log: Logger
  readonly #life: Lifecycle
  readonly #dir: string
  #status: MinerNodeStatus
  #image: PreparedImage | undefined
  #logFile: FileHandle | undefined
  #run: Running | undefined
  #stopping = false
  #healthTimer: NodeJS.Timeout | undefined
  #restartTimer: NodeJS.Timeout | undefined
  #checking = false
  #failedChecks = 0
  /** Runs in a row that ended before they were ever healthy: the backoff's exponent. */
  #crashes = 0

  constructor(assignment: MinerAssignment, deps: NodeRunnerDeps) {
    this.assignment = validateConfig(MinerAssignmentSchema, assignment, 'the Miner assignment')
    this.nodeId = this.assignment.nodeId ?? this.assignment.name
    this.#config = validateConfig(NodeRunnerConfigSchema, deps.config, 'the OneX node config')
    this.#deps = deps
    this.#log = (deps.logger ?? silentLogger()).child({ component: 'onex-node', miner: this.assignment.name })
    this.#dir = join(this.#config.workDir, 'miners', this.assignment.name)
    this.#status = {
      phase: 'Pending',
      addresses: [],
      artifacts: { imageDigest: this.assignment.imageDigest, genesisDigest: this.assignment.genesisDigest },
      conditions: [condition('Unknown', 'Pending')],
      restartCount: 0,
    }
    this.#life = new Lifecycle(`miner ${this.assignment.name}`, {
      start: (signal) => this.#start(signal),
      stop: () => this.#stop(),
      rollback: () => this.#kill(),
    })
  }

  /** The latest status snapshot (also handed to `report` on every change). */
  get status(): MinerNodeStatus {
    return structuredClone(this.#status)
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.#life.start(signal)
  }

  stop(): Promise<void> {
    return this.#life.stop()
  }

  /** Rewrites the whitelist (first entry: the producer); the node reads it again on its next tick. */
  async updateStaticNodes(staticNodes: readonly string[]): Promise<void> {
    const list = validateConfig(EnodeUrl.array().max(1000), staticNodes, 'staticNodes')
    const path = join(this.#dir, 'static-nodes.json')
    await writeFile(`${path}.tmp`, `${JSON.stringify(list, null, 2)}\n`)
    await rename(`${path}.tmp`, path)
  }

  async #start(signal: AbortSignal | undefined): Promise<void> {
    const { limits } = this.#config
    try {
      this.#set({ phase: 'Provisioning' })
      await mkdir(join(this.#dir, 'data'), { recursive: true })
      this.#image = await prepareImage(
        this.#deps.pullBlob,
        this.assignment.imageDigest,
        join(this.#config.workDir, 'images'),
        {
          maxImageBytes: limits.maxImageBytes,
          maxBytes: limits.maxUnpackedBytes,
          maxEntries: limits.maxEntries,
        },
        signal,
      )
      const genesis = join(this.#dir, 'genesis.json')
      // A genesis kept from an earlier run is used again only if it still hashes to the digest.
      const kept = await verifyFileDigest(
        genesis,
        this.assignment.genesisDigest,
        limits.maxGenesisBytes,
        'genesis',
      )
        .then(() => true)
        .catch(() => false)
      if (!kept) {
        await rm(genesis, { force: true })
        await pullVerified(
          this.#deps.pullBlob,
          this.assignment.genesisDigest,
          genesis,
          limits.maxGenesisBytes,
          'genesis file',
          signal,
        )
      }
      await this.updateStaticNodes(this.assignment.staticNodes)
      this.#logFile = await open(join(this.#dir, 'node.log'), 'a')
      await this.#launch()
      this.#healthTimer = setInterval(() => void this.#checkHealth(), this.#config.healthIntervalMs)
    } catch (err) {
      const e = toShoalError(err)
      this.#set({ phase: 'Failed', failureReason: e.code, failureMessage: e.message })
      this.#log.warn({ err: e }, 'the Miner could not start')
      throw e
    }
  }

  /** Starts one process and waits for its port file; throws (the process killed) when it does not come up. */
  async #launch(): Promise<void> {
    const image = this.#image as PreparedImage
    const portFile = join(this.#dir, 'port.json')
    await rm(portFile, { force: true })
    const { file, args } = await renderCommand(image, {
      nodeId: this.nodeId,
      genesis: join(this.#dir, 'genesis.json'),
      staticNodes: join(this.#dir, 'static-nodes.json'),
      host: this.#config.host,
      portFile,
      dataDir: join(this.#dir, 'data'),
      mineIntervalMs: String(this.assignment.mineIntervalMs),
    })
    const logFd = (this.#logFile as FileHandle).fd
    const child = spawn(file, args, {
      cwd: image.dir,
      stdio: ['ignore', logFd, logFd],
      // Its own process group: a stop reaches whatever the node started too.
      detached: true,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    })
    let exitInfo: string | undefined
    const exited = new Promise<void>((resolve) => {
      child.once('error', (err) => {
        exitInfo = `could not start: ${err.message}`
        // A spawn failure emits no 'exit': treat it as one.
        if (child.pid === undefined) this.#onExit(child, null, null, exitInfo).finally(resolve)
      })
      child.once('exit', (code, sig) => {
        exitInfo = sig ? `killed by ${sig}` : `exited with code ${code}`
        this.#onExit(child, code, sig, exitInfo).finally(resolve)
      })
    })
    const run: Running = { child, exited, healthyOnce: false, launching: true }
    this.#run = run
    this.#failedChecks = 0
    try {
      await this.#awaitPortFile(run, portFile, () => exitInfo)
    } catch (err) {
      if (this.#run === run) this.#run = undefined
      signalGroup(child, 'SIGKILL')
      await exited
      throw err
    }
  }

  async #awaitPortFile(run: Running, portFile: string, exitInfo: () => string | undefined): Promise<void> {
    const { child } = run
    const deadline = Date.now() + this.#config.startTimeoutMs
    for (;;) {
      const answer = await readFile(portFile, 'utf8').catch(() => undefined)
      if (answer !== undefined) {
        const port = parsePortFile(answer, child.pid)
        const host = this.#config.host.includes(':') ? `[${this.#config.host}]` : this.#config.host
        const url = `http://${host}:${port}`
        run.health = new HttpClient(url, {
          name: `node ${this.nodeId}`,
          timeoutMs: this.#config.healthTimeoutMs,
        })
        run.launching = false
        this.#set({
          phase: 'Running',
          podRef: { kind: 'Process', pid: child.pid as number, startedAt: new Date().toISOString() },
          addresses: [
            { type: 'InternalIP', address: this.#config.host },
            { type: 'HTTP', address: url },
            { type: 'Enode', address: `enode://${this.nodeId}@${host}:${port}` },
          ],
          failureReason: undefined,
          failureMessage: undefined,
        })
        this.#setHealth('Unknown', 'Starting', 'waiting for the first /health answer')
        this.#log.info({ pid: child.pid, url }, 'node process started')
        return
      }
      if (exitInfo() !== undefined || this.#run !== run)
        throw new ShoalError('UNAVAILABLE', `the node process ${exitInfo() ?? 'ended'} before it listened`)
      if (Date.now() > deadline) {
        throw new ShoalError(
          'TIMEOUT',
          `the node process wrote no port file within ${this.#config.startTimeoutMs} ms; it was killed`,
        )
      }
      await delay(PORT_FILE_POLL_MS)
    }
  }

  async #checkHealth(): Promise<void> {
    const run = this.#run
    if (this.#checking || this.#stopping || !run?.health) return
    this.#checking = true
    try {
      const body = await run.health.json<{ ok?: unknown; nodeId?: unknown; height?: unknown }>(
        'GET',
        '/health',
      )
      if (body.ok !== true || body.nodeId !== this.nodeId)
        throw new ShoalError('UPSTREAM_ERROR', `/health answered ${JSON.stringify(body).slice(0, 200)}`)
      if (this.#run !== run) return
      this.#failedChecks = 0
      run.healthyOnce = true
      this.#crashes = 0
      this.#setHealth('True', 'Healthy', `height ${Number(body.height) || 0}`)
    } catch (err) {
      if (this.#run !== run || this.#stopping) return
      this.#failedChecks++
      const message = `${toShoalError(err).message} (${this.#failedChecks} in a row)`
      this.#setHealth('False', 'HealthCheckFailed', message)
      if (this.#failedChecks >= this.#config.livenessFailures) {
        this.#log.warn({ failures: this.#failedChecks }, 'node unhealthy: killing it')
        signalGroup(run.child, 'SIGKILL')
      }
    } finally {
      this.#checking = false
    }
  }

  async #onExit(child: ChildProcess, code: number | null, sig: string | null, info: string): Promise<void> {
    const run = this.#run
    if (run?.child !== child) return
    this.#run = undefined
    this.#set({ podRef: undefined, addresses: [] })
    if (this.#stopping || run.launching) return
    this.#setHealth('False', 'ProcessExited', info)
    this.#log.warn({ code, signal: sig }, `node process ${info}`)
    if (!run.healthyOnce) this.#crashes++
    const failed = code !== 0 || sig !== null
    const policy = this.assignment.restartPolicy
    if (policy === 'Never' || (policy === 'OnFailure' && !failed)) {
      this.#set({
        phase: 'Failed',
        failureReason: 'ProcessExited',
        failureMessage: `the node process ${info}`,
      })
      return
    }
    this.#scheduleRestart()
  }

  #scheduleRestart(): void {
    const { initialMs, maxMs } = this.#config.backoff
    const wait = Math.min(maxMs, initialMs * 2 ** Math.max(0, Math.min(this.#crashes - 1, 30)))
    this.#set({ phase: 'Provisioning' })
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined
      if (this.#stopping) return
      this.#set({ restartCount: this.#status.restartCount + 1 })
      this.#launch().catch((err) => {
        if (this.#stopping) return
        const e = toShoalError(err)
        this.#log.warn({ err: e }, 'restart failed')
        this.#crashes++
        this.#setHealth('False', 'RestartFailed', e.message)
        // An exit while launching is left to this catch (Running.launching): try again later.
        this.#scheduleRestart()
      })
    }, wait)
    this.#log.info({ waitMs: wait, policy: this.assignment.restartPolicy }, 'restarting the node process')
  }

  async #stop(): Promise<void> {
    this.#set({ phase: 'Deleting' })
    this.#stopping = true
    clearInterval(this.#healthTimer)
    clearTimeout(this.#restartTimer)
    const run = this.#run
    if (run) {
      signalGroup(run.child, 'SIGTERM')
      const graceMs = this.assignment.podDeletionTimeoutSeconds * 1000
      const inTime = await Promise.race([run.exited.then(() => true), delay(graceMs).then(() => false)])
      if (!inTime) {
        this.#log.warn({ graceMs }, 'node process ignored SIGTERM: SIGKILL')
        signalGroup(run.child, 'SIGKILL')
        await run.exited
      }
    }
    this.#setHealth('False', 'Stopped', 'the Miner was deleted')
    await this.#logFile?.close()
    this.#logFile = undefined
  }

  /** After a failed start: nothing left running, the Failed status kept. */
  async #kill(): Promise<void> {
    this.#stopping = true
    clearInterval(this.#healthTimer)
    clearTimeout(this.#restartTimer)
    const run = this.#run
    if (run) {
      signalGroup(run.child, 'SIGKILL')
      await run.exited
    }
    await this.#logFile?.close()
    this.#logFile = undefined
  }

  #setHealth(status: MinerCondition['status'], reason: string, message: string): void {
    const old = this.#status.conditions.find((c) => c.type === 'PodHealthy')
    if (old && old.status === status && old.reason === reason && old.message === message) return
    const next = condition(status, reason, message)
    // The transition time moves only when the status does (as Kubernetes conditions do).
    if (old && old.status === status) next.lastTransitionTime = old.lastTransitionTime
    this.#set({ conditions: [...this.#status.conditions.filter((c) => c.type !== 'PodHealthy'), next] })
  }

  #set(patch: Partial<MinerNodeStatus>): void {
    const next = { ...this.#status, ...patch }
    for (const key of Object.keys(next) as (keyof MinerNodeStatus)[])
      if (next[key] === undefined) delete next[key]
    if (JSON.stringify(next) === JSON.stringify(this.#status)) return
    this.#status = next
    try {
      this.#deps.report?.(this.status)
    } catch (err) {
      this.#log.warn({ err }, 'the status reporter threw')
    }
  }
}
