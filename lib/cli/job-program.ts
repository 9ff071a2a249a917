/**
 * `shoal job run|get|list|rerun|cancel`: distribution jobs on the herd's resource API
 * (docs/jobs.md). A job is a Distribution object; the herd's job controller does the rest, so
 * these commands only write the object and read its status. `--wait` follows the job over one
 * watch and exits 0 only when every target succeeded.
 */
import { readFile } from 'node:fs/promises'
import { ResourceClient } from '../apiserver/client/index.js'
import { isShoalError, ShoalError } from '../errors/index.js'
import {
  BandwidthClassName,
  DEFAULT_JOB_NAMESPACE,
  type Distribution,
  DistributionKind,
  type DistributionSpecT,
  type DistributionStatusT,
  DistributionTaskKind,
} from '../jobs/kinds.js'
import { generatedName, hostPath, MAX_PLAN_BYTES, type Plan, parsePlan, planFrom } from '../jobs/plan.js'
import type { ClientSettings } from './client-config.js'
import { Command } from './commander.js'
import { apiServerOptions, exitCodesHelp, type Output, oneOf, parseBool, stdio, usage } from './common.js'
import { intFlag } from './daemon.js'
import { isFinished, jobFailure, jobResult, jobTable, listLines } from './job-output.js'
import { addClientOptions, type ClientDeps, type Reporter, startClient } from './output.js'

type Jobs = ResourceClient<DistributionSpecT, DistributionStatusT>

interface CommonFlags {
  config?: string
  json?: boolean
  quiet?: boolean
  apiserver?: string
  namespace?: string
}

/** The resource API of the settings (or --apiserver), with the token of the token file. */
async function connect(
  settings: ClientSettings,
  f: CommonFlags,
): Promise<{ jobs: Jobs; url: string; token?: string }> {
  const addr = f.apiserver ?? settings.apiserver
  const url = /^https?:\/\//.test(addr) ? addr.replace(/\/+$/, '') : `http://${addr}`
  let token: string | undefined
  if (settings.tokenFile) {
    try {
      token = (await readFile(settings.tokenFile, 'utf8')).trim()
    } catch (err) {
      throw usage(
        `cannot read the token file ${settings.tokenFile} (tokenFile / SHOAL_TOKEN_FILE): ${(err as Error).message}`,
      )
    }
  }
  return { jobs: new ResourceClient(url, DistributionKind, { token, timeoutMs: 30_000 }), url, token }
}

function common(cmd: Command): Command {
  return addClientOptions(
    apiServerOptions(cmd, { tokenFile: false }).option(
      '--namespace <ns>',
      'the namespace of the job',
      DEFAULT_JOB_NAMESPACE,
    ),
  )
}

interface RunFlags extends CommonFlags {
  src?: string
  to?: string[]
  name?: string
  tag?: string
  timeoutSeconds?: number
  resType?: 'file' | 'directory'
  hasFlag?: boolean
  isCover?: boolean
  bandwidthClass?: string
  wait?: boolean
}

export function jobCommand(io: Output = stdio, deps: ClientDeps = {}, name = 'job'): Command {
  const cmd = new Command(name).description(
    "Distribution jobs: one source to many hosts' folders, run by the herd's job controller and the hosts' agents (docs/jobs.md).",
  )

  const run = cmd
    .command('run')
    .description(
      'Create a job from PLAN (YAML or JSON: source, targets, options; docs/jobs.md) or from --src/--tag and --to flags. With --wait, follow it and print the per-target table; exit 0 only when every target succeeded.',
    )
    .argument('[plan]', 'the plan file (YAML or JSON)')
    .option('--src <host:/path>', 'flags form: the file (or folder) on its host, pushed by its agent first')
    .option('--tag <tag>', 'flags form: an existing tag instead of --src')
    .option(
      '--to <host:/dir>',
      'flags form: a target host and destination folder (repeat for each)',
      collect,
      [],
    )
    .option('--name <name>', "the job name (default: the plan's, else job-<time>-<random>)")
    .option(
      '--timeout-seconds <n>',
      'flags form: a task not done this long after it started fails (0: never)',
      intFlag,
    )
    .option('--res-type <type>', 'flags form: file or directory', oneOf('file', 'directory'))
    .option('--has-flag <bool>', 'flags form: write a flag file next to each copy (true|false)', parseBool)
    .option('--is-cover <bool>', 'flags form: overwrite an existing file (true|false)', parseBool)
    .option(
      '--bandwidth-class <name>',
      "the targets' agents cap their downloads to this class of their jobs.bandwidthClasses (overrides the plan's)",
    )
    .option('--wait', 'wait until every target is done; print the table; exit non-zero unless all succeeded')
  common(run)
    .addHelpText(
      'after',
      `\nExamples:\n  shoal job run examples/jobs/trade-data.yaml --wait\n  shoal job run --src 192.168.1.1:/usr/local/data/xxx交易数据.txt --to 192.168.1.10:/usr/local/data --to 192.168.1.11:/usr/local/data --wait\n${exitCodesHelp()}`,
    )
    .action(async (planFile: string | undefined, f: RunFlags) => {
      const { settings, reporter } = startClient(io, f, deps)
      const plan = await readPlan(planFile, f)
      const { jobs, url, token } = await connect(settings, f)
      const jobName = f.name ?? plan.name ?? generatedName()
      await warnUnseenHosts(url, token, plan, reporter)
      let d: Distribution
      try {
        d = (await jobs.create(plan.namespace, {
          metadata: { name: jobName },
          spec: plan.spec,
        })) as Distribution
      } catch (err) {
        if (isShoalError(err, 'ALREADY_EXISTS'))
          throw new ShoalError(
            'ALREADY_EXISTS',
            `job ${jobName} exists already: pick another --name, or "shoal job rerun ${jobName}"`,
          )
        throw err
      }
      if (!f.wait) {
        reporter.result(jobResult(d), [
          `job ${jobName} created: ${plan.spec.targets.length} target(s); follow it with "shoal job get ${jobName}", or run with --wait`,
        ])
        return
      }
      await finish(await follow(jobs, url, d, reporter), reporter, io, f)
    })

  const get = cmd
    .command('get')
    .description('The per-target table of a job (host, path, phase, seconds, source, error).')
    .argument('<id>', 'the job name')
  common(get).action(async (id: string, f: CommonFlags) => {
    const { settings, reporter } = startClient(io, f, deps)
    const { jobs } = await connect(settings, f)
    const d = (await jobs.get(f.namespace ?? DEFAULT_JOB_NAMESPACE, id)) as Distribution
    reporter.result(jobResult(d), jobTable(d))
  })

  const list = cmd.command('list').description('The jobs of the namespace, oldest first: phase and counts.')
  common(list).action(async (f: CommonFlags) => {
    const { settings, reporter } = startClient(io, f, deps)
    const { jobs } = await connect(settings, f)
    const items = (await jobs.list(f.namespace ?? DEFAULT_JOB_NAMESPACE)).items as Distribution[]
    items.sort((a, b) => a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp))
    reporter.result({ items: items.map(jobResult) }, listLines(items))
  })

  const rerun = cmd
    .command('rerun')
    .description(
      'Run a job again: --failed (the default) the targets that failed (and the push, if it failed), --all every task. Clears a cancel.',
    )
    .argument('<id>', 'the job name')
    .option('--failed', 'only what failed (default)')
    .option('--all', 'everything, the push included (a new tag version)')
    .option('--wait', 'wait until every target is done; print the table; exit non-zero unless all succeeded')
  common(rerun).action(
    async (id: string, f: CommonFlags & { failed?: boolean; all?: boolean; wait?: boolean }) => {
      if (f.failed && f.all) throw usage('--failed and --all exclude each other')
      const { settings, reporter } = startClient(io, f, deps)
      const { jobs, url } = await connect(settings, f)
      const ns = f.namespace ?? DEFAULT_JOB_NAMESPACE
      const cur = (await jobs.get(ns, id)) as Distribution
      const d = (await jobs.patch(ns, id, {
        metadata: { resourceVersion: cur.metadata.resourceVersion },
        spec: { run: cur.spec.run + 1, rerun: f.all ? 'all' : 'failed', cancelled: false },
      })) as Distribution
      if (!f.wait) {
        reporter.result(jobResult(d), [`job ${id}: run ${d.spec.run} started (${d.spec.rerun})`])
        return
      }
      await finish(await follow(jobs, url, d, reporter), reporter, io, f)
    },
  )

  const cancel = cmd
    .command('cancel')
    .description(
      'Cancel a job: unfinished targets fail with "cancelled"; finished ones stay. "rerun" starts them again.',
    )
    .argument('<id>', 'the job name')
  common(cancel).action(async (id: string, f: CommonFlags) => {
    const { settings, reporter } = startClient(io, f, deps)
    const { jobs } = await connect(settings, f)
    const d = (await jobs.patch(f.namespace ?? DEFAULT_JOB_NAMESPACE, id, {
      spec: { cancelled: true },
    })) as Distribution
    reporter.result(jobResult(d), [`job ${id}: cancelled`])
  })
  return cmd
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value]
}

async function readPlan(planFile: string | undefined, f: RunFlags): Promise<Plan> {
  const flagsForm = f.src !== undefined || f.tag !== undefined || (f.to?.length ?? 0) > 0
  if (planFile !== undefined) {
    if (flagsForm) throw usage('give either a PLAN file or --src/--tag and --to, not both')
    let text: string
    try {
      const buf = await readFile(planFile)
      if (buf.length > MAX_PLAN_BYTES)
        throw usage(`plan ${planFile} is larger than ${MAX_PLAN_BYTES >> 20} MiB`)
      text = buf.toString('utf8')
    } catch (err) {
      if (isShoalError(err)) throw err
      throw usage(`cannot read plan ${planFile}: ${(err as Error).message}`)
    }
    const plan = parsePlan(text, planFile)
    if (f.bandwidthClass === undefined) return plan
    const bandwidthClass = BandwidthClassName.safeParse(f.bandwidthClass)
    if (!bandwidthClass.success)
      throw usage(`--bandwidth-class ${f.bandwidthClass}: ${bandwidthClass.error.issues[0]?.message}`)
    return {
      ...plan,
      spec: { ...plan.spec, options: { ...plan.spec.options, bandwidthClass: bandwidthClass.data } },
    }
  }
  if (!flagsForm)
    throw usage('give a PLAN file, or --src HOST:/path (or --tag TAG) and at least one --to HOST:/dir')
  if ((f.src === undefined) === (f.tag === undefined))
    throw usage('give exactly one of --src HOST:/path and --tag TAG')
  if (!f.to?.length) throw usage('give at least one --to HOST:/dir')
  const options = {
    ...(f.timeoutSeconds !== undefined ? { timeoutSeconds: f.timeoutSeconds } : {}),
    ...(f.resType !== undefined ? { resType: f.resType } : {}),
    ...(f.hasFlag !== undefined ? { hasFlag: f.hasFlag } : {}),
    ...(f.isCover !== undefined ? { isCover: f.isCover } : {}),
    ...(f.bandwidthClass !== undefined ? { bandwidthClass: f.bandwidthClass } : {}),
  }
  return planFrom(
    {
      ...(f.namespace ? { namespace: f.namespace } : {}),
      source: f.src !== undefined ? hostPath(f.src, '--src') : { tag: f.tag },
      targets: f.to.map((to) => hostPath(to, '--to')),
      options,
    },
    '(flags)',
  )
}

/** Follows the job over one watch until it is finished (the controller saw this run and all is final). */
async function follow(jobs: Jobs, url: string, d: Distribution, reporter: Reporter): Promise<Distribution> {
  const ac = new AbortController()
  const hint = setTimeout(
    () =>
      reporter.note(
        `job ${d.metadata.name}: the herd's job controller has not summarised it yet (does the herd at ${url} run its job controller?)`,
      ),
    15_000,
  )
  try {
    if (isFinished(d)) return d
    for await (const ev of jobs.watch({
      namespace: d.metadata.namespace,
      fieldSelector: `metadata.name=${d.metadata.name}`,
      signal: ac.signal,
    })) {
      if (ev.type === 'BOOKMARK') continue
      if (ev.type === 'DELETED')
        throw new ShoalError('NOT_FOUND', `job ${d.metadata.name} was deleted while waiting`)
      const cur = ev.object as Distribution
      if (cur.status?.observedGeneration) clearTimeout(hint)
      const c = cur.status?.counts
      if (c && reporter.drawsProgress)
        reporter.progress({
          bytes: c.succeeded + c.failed,
          total: c.total,
          phase: `${c.running} running, ${c.failed} failed`,
        })
      if (isFinished(cur)) return cur
    }
    throw new ShoalError('UNAVAILABLE', 'the watch of the job ended')
  } finally {
    clearTimeout(hint)
    ac.abort()
  }
}

/** Prints the table (or nothing with --json: the result goes with the error or alone) and exits. */
async function finish(d: Distribution, reporter: Reporter, io: Output, f: CommonFlags): Promise<void> {
  if (d.status?.phase === 'Succeeded') {
    reporter.result(jobResult(d), jobTable(d))
    return
  }
  reporter.clear()
  if (!f.json && !f.quiet) for (const line of jobTable(d)) io.out(line)
  throw jobFailure(d)
}

/**
 * A note for each host of the plan that has never answered a job task (no task of it left
 * Pending): its agent may not be running with jobs enabled, and its targets will fail by
 * deadline. Only a note: a new host's first job is legitimate. Skipped for large plans.
 */
async function warnUnseenHosts(
  url: string,
  token: string | undefined,
  plan: Plan,
  reporter: Reporter,
): Promise<void> {
  if (reporter.json) return
  const hosts = new Set(plan.spec.targets.map((t) => t.host))
  if ('host' in plan.spec.source) hosts.add(plan.spec.source.host)
  if (hosts.size > 50) return
  const tasks = new ResourceClient(url, DistributionTaskKind, { token, timeoutMs: 10_000 })
  const unseen: string[] = []
  try {
    for (const host of hosts) {
      const l = await tasks.list(undefined, {
        fieldSelector: `spec.host=${host},status.phase!=Pending`,
        limit: 1,
      })
      if (l.items.length === 0) unseen.push(host)
    }
  } catch {
    return // the create that follows reports an unreachable API properly
  }
  if (unseen.length > 0)
    reporter.note(
      `note: no agent on ${unseen.join(', ')} has answered a job yet; a host whose agent does not run with jobs enabled fails after options.timeoutSeconds (${plan.spec.options.timeoutSeconds} s)`,
    )
}
