/** The umbrella `shoal` command: herd, agent, devcluster, demo. */
import { demo } from '../devcluster/demo.js'
import { DEFAULT_WORKDIR, down, hints, restart, status, up } from '../devcluster/index.js'
import { AGENT_BASE_PORT, HERD_BASE_PORT } from '../devcluster/layout.js'
import { isShoalError } from '../errors/index.js'
import { Command, CommanderError } from './commander.js'
import { type Output, stdio } from './common.js'
import { intFlag } from './daemon.js'
import { agentCommand, herdCommand } from './daemons.js'

export function shoalProgram(io: Output = stdio): Command {
  const program = new Command('shoal').description(
    'Shoal: P2P file distribution over BitTorrent. Run "shoal <command> --help" for details.',
  )
  program.addCommand(herdCommand('herd'))
  program.addCommand(agentCommand('agent'))

  const dev = program
    .command('devcluster')
    .description('Run a herd and N agents as separate local processes (docs/architecture.md §3 ports).')
  const upCmd = dev
    .command('up')
    .description(
      'Start the herd and the agents, wait until every one is ready, then print the commands to push and pull with their ports.',
    )
    .option('--agents <n>', 'number of agents', intFlag, 3)
    .option('--workdir <dir>', 'data and logs folder', DEFAULT_WORKDIR)
  portFlags(upCmd).action(async (f) =>
    usage(io, async () => {
      const state = await up({
        workdir: f.workdir,
        agents: f.agents,
        basePort: f.basePort,
        agentBasePort: f.agentBasePort,
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
    .argument('[name]', 'the process to restart: herd, agent-1, agent-2, …; all of them when omitted')
    .description(
      'Stop a process (SIGTERM, SIGKILL after 10 s) and start it again with the same ports, data and log; without NAME every process, the herd first. Waits until each is ready. An unknown NAME exits 2.',
    )
    .option('--workdir <dir>', 'data and logs folder', DEFAULT_WORKDIR)
    .action(async (name: string | undefined, f) =>
      usage(io, async () => {
        for (const p of await restart({ workdir: f.workdir, name }))
          io.out(`restarted ${p.name.padEnd(9)} pid ${String(p.pid).padEnd(8)} ${p.readyUrl}`)
      }),
    )
  dev
    .command('down')
    .description('Stop every process of the devcluster (agents first).')
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
