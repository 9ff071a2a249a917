/**
 * The daemon commands (flags → config overrides → start). Each binary in cmd/ runs one of
 * these; `shoal herd` and `shoal agent` reuse them.
 */
import { AgentConfigSchema } from '../agent/config.js'
import { AgentServer } from '../agent/server/index.js'
import { BuildIndexConfigSchema } from '../build-index/config.js'
import { BuildIndexServer } from '../build-index/server/index.js'
import { HerdConfigSchema } from '../herd/config.js'
import { createHerd } from '../herd/index.js'
import { OriginConfigSchema } from '../origin/config.js'
import { OriginNode } from '../origin/node.js'
import { ProxyConfigSchema } from '../proxy/config.js'
import { ProxyServer } from '../proxy/server/index.js'
import { TrackerConfigSchema } from '../tracker/config.js'
import { TrackerServer } from '../tracker/server/index.js'
import { Command } from './commander.js'
import { addDaemonOptions, intFlag, runDaemon } from './daemon.js'

const listen = (f: Record<string, unknown>) => ({ port: f.port, host: f.host })

/** What a daemon's line on stderr starts with: its binary, or "shoal <name>" for a subcommand. */
function daemonLabel(name: string): string {
  return name.startsWith('shoal') ? name : `shoal ${name}`
}

/** commander reducer for repeatable options. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

export function agentCommand(name = 'shoal-agent'): Command {
  return addDaemonOptions(new Command(name))
    .description(
      'Run a Shoal agent: downloads blobs through the swarm, seeds them, serves PullCLI on 127.0.0.1.',
    )
    .option('--port <n>', 'local API port (default 16002)', intFlag)
    .option('--host <addr>', 'local API bind address (default 127.0.0.1)')
    .option('--peer-port <n>', 'BitTorrent peer port (default 16001)', intFlag)
    .option('--data-dir <dir>', 'cache and download folder (default ./data/agent)')
    .option(
      '--tracker <addr>',
      'tracker address host:port; repeat for several (default 127.0.0.1:15003)',
      collect,
    )
    .option('--build-index <addr>', 'build-index address host:port (default 127.0.0.1:15004)')
    .action((f) =>
      runDaemon(
        {
          name,
          label: daemonLabel(name),
          component: 'agent',
          schema: AgentConfigSchema,
          overrides: () => ({
            server: listen(f),
            peer: { port: f.peerPort },
            dataDir: f.dataDir,
            trackers: f.tracker,
            buildIndex: f.buildIndex,
          }),
          create: (config, logger) => new AgentServer(config, { logger }),
        },
        f,
      ),
    )
}

export function originCommand(name = 'shoal-origin'): Command {
  return addDaemonOptions(new Command(name))
    .description(
      'Run a Shoal origin: stores blobs, writes them back to the backend, seeds them over BitTorrent.',
    )
    .option('--port <n>', 'HTTP port (default 15002)', intFlag)
    .option('--host <addr>', 'HTTP bind address (default 0.0.0.0)')
    .option('--peer-port <n>', 'BitTorrent peer port (default 15001)', intFlag)
    .option('--data-dir <dir>', 'blob cache folder (default ./data/origin)')
    .option('--tracker-url <url>', 'tracker URL written into metainfo (default http://127.0.0.1:15003)')
    .action((f) =>
      runDaemon(
        {
          name,
          label: daemonLabel(name),
          component: 'origin',
          schema: OriginConfigSchema,
          overrides: () => ({
            server: listen(f),
            peer: { port: f.peerPort },
            dataDir: f.dataDir,
            trackerUrl: f.trackerUrl,
          }),
          create: (config, logger) => new OriginNode(config, { logger }),
        },
        f,
      ),
    )
}

export function trackerCommand(name = 'shoal-tracker'): Command {
  return addDaemonOptions(new Command(name))
    .description('Run a Shoal tracker: BitTorrent HTTP announce with ordered peer lists, metainfo by digest.')
    .option('--port <n>', 'HTTP port (default 15003)', intFlag)
    .option('--host <addr>', 'HTTP bind address (default 0.0.0.0)')
    .action((f) =>
      runDaemon(
        {
          name,
          component: 'tracker',
          schema: TrackerConfigSchema,
          overrides: () => ({ server: listen(f) }),
          create: (config, logger) => new TrackerServer(config, { logger }),
        },
        f,
      ),
    )
}

export function buildIndexCommand(name = 'shoal-build-index'): Command {
  return addDaemonOptions(new Command(name))
    .description('Run a Shoal build-index: maps tags (srcHost-srcDir-fileName:version) to digests.')
    .option('--port <n>', 'HTTP port (default 15004)', intFlag)
    .option('--host <addr>', 'HTTP bind address (default 0.0.0.0)')
    .action((f) =>
      runDaemon(
        {
          name,
          component: 'build-index',
          schema: BuildIndexConfigSchema,
          overrides: () => ({ server: listen(f) }),
          create: (config, logger) => new BuildIndexServer(config, { logger }),
        },
        f,
      ),
    )
}

export function proxyCommand(name = 'shoal-proxy'): Command {
  return addDaemonOptions(new Command(name))
    .description('Run a Shoal proxy: the push entry point (uploads to origins, puts tags).')
    .option('--port <n>', 'HTTP port (default 15000)', intFlag)
    .option('--host <addr>', 'HTTP bind address (default 0.0.0.0)')
    .action((f) =>
      runDaemon(
        {
          name,
          component: 'proxy',
          schema: ProxyConfigSchema,
          overrides: () => ({ server: listen(f) }),
          create: (config, logger) => new ProxyServer(config, { logger }),
        },
        f,
      ),
    )
}

export function herdCommand(name = 'herd'): Command {
  return addDaemonOptions(new Command(name))
    .description(
      'Run proxy + origin + tracker + build-index in one process (local-folder backend, in-memory peers).',
    )
    .option('--data-dir <dir>', 'folder for the origin cache and the local backend (default ./data/herd)')
    .option('--host <addr>', 'address the services advertise to agents (default 127.0.0.1)')
    .option(
      '--base-port <n>',
      'proxy port; the others follow docs/architecture.md §3 (default 15000)',
      intFlag,
    )
    .action((f) =>
      runDaemon(
        {
          name: 'shoal-herd',
          label: daemonLabel(name),
          component: 'herd',
          schema: HerdConfigSchema,
          overrides: () => ({ dataDir: f.dataDir, advertiseHost: f.host, basePort: f.basePort }),
          create: (config, logger) => createHerd(config, { logger }),
        },
        f,
      ),
    )
}
