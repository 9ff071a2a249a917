/** The umbrella `shoal` command: herd, agent, devcluster, demo. */
import { demo } from '../devcluster/demo.js'
import { DEFAULT_WORKDIR, down, status, up } from '../devcluster/index.js'
import { Command } from './commander.js'
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
  dev
    .command('up')
    .description('Start the herd and the agents, wait until every one is ready.')
    .option('--agents <n>', 'number of agents', intFlag, 3)
    .option('--workdir <dir>', 'data and logs folder', DEFAULT_WORKDIR)
    .option('--base-port <n>', 'herd ports start here (proxy); see docs/architecture.md §3', intFlag, 15000)
    .option('--agent-base-port <n>', 'agent N uses this + 1000·(N−1) (+1 peer, +2 API)', intFlag, 16000)
    .action(async (f) => {
      const state = await up({
        workdir: f.workdir,
        agents: f.agents,
        basePort: f.basePort,
        agentBasePort: f.agentBasePort,
      })
      for (const p of state.processes)
        io.out(`${p.name.padEnd(9)} pid ${String(p.pid).padEnd(8)} ${p.readyUrl}  log ${p.log}`)
      io.out(
        `devcluster up: push with "PushCLI push --src-path FILE", pull with "PullCLI pull --tag T --dst-path DIR --dst-host 127.0.0.1:16002"`,
      )
    })
  dev
    .command('status')
    .description('Show each process and whether it is alive and ready.')
    .option('--workdir <dir>', 'data and logs folder', DEFAULT_WORKDIR)
    .action(async (f) => {
      const list = await status({ workdir: f.workdir })
      if (list.length === 0) return io.out('devcluster is not running')
      for (const p of list)
        io.out(
          `${p.name.padEnd(9)} pid ${String(p.pid).padEnd(8)} ${p.alive ? (p.ready ? 'ready' : 'starting') : 'stopped'}  ${p.readyUrl}`,
        )
    })
  dev
    .command('down')
    .description('Stop every process of the devcluster (agents first).')
    .option('--workdir <dir>', 'data and logs folder', DEFAULT_WORKDIR)
    .action(async (f) => {
      const n = await down({ workdir: f.workdir })
      io.out(n === 0 ? 'devcluster is not running' : `stopped ${n} processes`)
    })

  program
    .command('demo')
    .description(
      'The main job: devcluster with 3 agents, push a 64 MiB file, pull it on every agent, verify, print a table.',
    )
    .option('--agents <n>', 'number of agents', intFlag, 3)
    .option('--size-mib <n>', 'size of the generated file in MiB', intFlag, 64)
    .option('--workdir <dir>', 'data and logs folder', '.shoal/demo')
    .action(async (f) => {
      const rows = await demo({ agents: f.agents, sizeMiB: f.sizeMib, workdir: f.workdir, out: io.out })
      if (rows.some((r) => !r.verified)) {
        io.err('shoal demo: at least one copy did not match the pushed file')
        process.exitCode = 1
      }
    })
  return program
}
