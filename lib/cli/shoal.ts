/** The umbrella `shoal` command: herd, agent, devcluster, demo, tags, job, events, onex. */
import { demo } from '../devcluster/demo.js'
import { DEFAULT_WORKDIR, down, hints, restart, status, up } from '../devcluster/index.js'
import { AGENT_BASE_PORT, HERD_BASE_PORT, S3_BUCKET } from '../devcluster/layout.js'
import { runS3Server } from '../devcluster/s3.js'
import { isShoalError } from '../errors/index.js'
import { Command, CommanderError } from './commander.js'
import { type Output, stdio } from './common.js'
import { intFlag } from './daemon.js'
import { agentCommand, herdCommand, originCommand } from './daemons.js'
import { eventsCommand } from './events-program.js'
import { jobCommand } from './job-program.js'
import { onexCommand } from './onex-program.js'
import { tagsCommand } from './tags-program.js'

export function shoalProgram(io: Output = stdio): Command {
  const program = new Command('shoal').description(
    'Shoal: P2P file distribution over BitTorrent. Run "shoal <command> --help" for details.',
  )
  program.addCommand(herdCommand('herd'))
  program.addCommand(agentCommand('agent'))
  program.addCommand(originCommand('origin'))
  program.addCommand(tagsCommand(io))
  program.addCommand(jobCommand(io))
  program.addCommand(eventsCommand(io))
  program.addCommand(onexCommand(io))

  const dev = program
    .command('devcluster')
    .description(
      'Run a herd and N agents as separate local processes (docs/architecture.md §3 ports); with --origins a ring of several origins, with --s3 an S3-compatible server as their backend.',
    )
  const upCmd = dev
    .command('up')
    .description(
      'Start the S3 server (--s3), the herd, the other origins (--origins) and the agents, each awaited until ready, then print the commands to push and pull with their ports. Config files for the ring are written to WORKDIR/config.',
    )
    .option('--agents <n>', 'number of agents', intFlag, 3)
    .option(
      '--origins <n>',
      "origins in the ring: the herd's (15001/15002) and N−1 more processes, origin N on 15001/15002 + 10·(N−1) (origin-2: 15011/15012, origin-3: 15021/15022); without --s3 they share the herd's backend folder",
      intFlag,
      1,
    )
    .option(
      '--replicas <n>',
      'origins owning each blob (hashring.replicas); default: origins, at most 3',
      intFlag,
    )
    .option(
      '--s3',
      `also run an S3-compatible server (s3rver, a development dependency) on --base-port − 1000 (14000), bucket ${S3_BUCKET}, as every origin's backend; objects under WORKDIR/s3`,
    )
    .option(
      '--no-jobs',
      "agents take no distribution jobs (by default each is named agent-N for jobs, watches the herd's resource API and may write under WORKDIR/roots/agent-N)",
    )
    .option('--workdir <dir>', 'data and logs folder', DEFAULT_WORKDIR)
  portFlags(upCmd).action(async (f) =>
    usage(io, async () => {
      const state = await up({
        workdir: f.workdir,
        agents: f.agents,
        basePort: f.basePort,
        agentBasePort: f.agentBasePort,
        origins: f.origins,
        replicas: f.replicas,
        s3: f.s3 === true,
        jobs: f.jobs !== false,
      })
      for (const p of state.processes)
        io.out(`${p.name.padEnd(9)} pid ${String(p.pid).padEnd(8)} ${p.readyUrl}  log ${p.log}`)
      io.out('devcluster up; next:')
      for (const line of hints(state)) io.out(`  ${line}`)
    }),
  )
  dev
    .command('status')
    .description(
      'One line per process: name, pid, URL, and "up" or "down: why" (its pid is not running, or one of its HTTP listeners does not answer /health). Exits 0 only when every process is up, 1 otherwise (also when no devcluster runs).',
    )
    .option('--workdir <dir>', 'data and logs folder', DEFAULT_WORKDIR)
    .action(async (f) => {
      const list = await status({ workdir: f.workdir })
      if (list.length === 0) {
        io.out('devcluster is not running')
        process.exitCode = 1
        return
      }
      for (const p of list)
        io.out(
          `${p.name.padEnd(9)} pid ${String(p.pid).padEnd(8)} ${p.readyUrl}  ${p.up ? 'up' : `down: ${p.reason}`}`,
        )
      if (list.some((p) => !p.up)) process.exitCode = 1
    })
  dev
    .command('restart')
    .argument(
      '[name]',
      'the process to restart: s3, herd, origin-2, …, agent-1, agent-2, …; all of them when omitted',
    )
    .description(
      'Stop a process (SIGTERM, SIGKILL after 10 s) and start it again with the same ports, data and log; without NAME every process in start order. Waits until each is ready. An unknown NAME exits 2.',
    )
    .option('--workdir <dir>', 'data and logs folder', DEFAULT_WORKDIR)
    .action(async (name: string | undefined, f) =>
      usage(io, async () => {
        for (const p of await restart({ workdir: f.workdir, name }))
          io.out(`restarted ${p.name.padEnd(9)} pid ${String(p.pid).padEnd(8)} ${p.readyUrl}`)
      }),
    )
  dev
    .command('s3-server', { hidden: true })
    .description('The S3-compatible server `up --s3` runs as a process of its own (s3rver).')
    .requiredOption('--port <n>', 'port', intFlag)
    .requiredOption('--directory <dir>', 'folder holding the buckets')
    .requiredOption('--bucket <name>', 'bucket created at start')
    .action(async (f) => runS3Server({ port: f.port, directory: f.directory, bucket: f.bucket }))
  dev
    .command('down')
    .description('Stop every process of the devcluster (agents first, then the origins, the herd, S3).')
    .option('--workdir <dir>', 'data and logs folder', DEFAULT_WORKDIR)
    .action(async (f) => {
      const n = await down({ workdir: f.workdir })
      io.out(n === 0 ? 'devcluster is not running' : `stopped ${n} processes`)
    })

  const demoCmd = program
    .command('demo')
    .description(
      'The main job: devcluster with 3 agents, push a 64 MiB file, pull it on every agent, verify, print a table.',
    )
    .option('--agents <n>', 'number of agents', intFlag, 3)
    .option('--size-mib <n>', 'size of the generated file in MiB', intFlag, 64)
    .option('--workdir <dir>', 'data and logs folder', '.shoal/demo')
  portFlags(demoCmd).action(async (f) =>
    usage(io, async () => {
      const rows = await demo({
        agents: f.agents,
        sizeMiB: f.sizeMib,
        workdir: f.workdir,
        basePort: f.basePort,
        agentBasePort: f.agentBasePort,
        out: io.out,
      })
      if (rows.some((r) => !r.verified)) {
        io.err('shoal demo: at least one copy did not match the pushed file')
        process.exitCode = 1
      }
    }),
  )
  return program
}

/** The port flags `devcluster up` and `demo` share. */
function portFlags(cmd: Command): Command {
  return cmd
    .option(
      '--base-port <n>',
      'the herd listens on this port (proxy, for PushCLI/RemoveCLI --dst-host) and the next 4: origin peer, origin, tracker, build-index',
      intFlag,
      HERD_BASE_PORT,
    )
    .option(
      '--agent-base-port <n>',
      'agent N uses this + 1000·(N−1) and the next 2: peer +1, API +2 (PullCLI --dst-host)',
      intFlag,
      AGENT_BASE_PORT,
    )
}

/** A ShoalError USAGE (a bad port choice, an unknown process name) is one line and exit 2. */
async function usage(io: Output, work: () => Promise<void>): Promise<void> {
  try {
    await work()
  } catch (err) {
    if (!isShoalError(err) || err.code !== 'USAGE') throw err
    io.err(`shoal: ${err.message}`)
    throw new CommanderError(2, 'shoal.usage', err.message)
  }
}
