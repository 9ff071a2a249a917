/** PullCLI pull: the flags of the design's §4.3, their defaults and checks, and the output. */
import { AgentClient } from '../agent/client/index.js'
import { Tag } from '../core/index.js'
import { isCsgwAddress } from '../csgw/index.js'
import { toShoalError } from '../errors/index.js'
import { readTokenFile } from '../events/sinks.js'
import { Command } from './commander.js'
import {
  exitCodesHelp,
  formatBytes,
  type Output,
  oneOf,
  parseBool,
  parseSeconds,
  softwareVersion,
  stdio,
  usage,
} from './common.js'
import { pullFromCsgw } from './csgw.js'
import { checkName } from './destination.js'
import { addListCommand } from './list-program.js'
import { addClientOptions, type ClientDeps, startClient } from './output.js'
import { pullAny } from './pull-any.js'
import { clientLister, resolveName } from './resolve-name.js'
import { withProgressTimeout } from './watchdog.js'

interface PullFlags {
  tag?: string
  srcHost?: string
  srcDir?: string
  version?: string
  dstHost?: string
  dstPath: string
  resType?: 'file' | 'directory'
  resDesc?: string
  timeout?: number
  hasFlag: 'F' | 'N'
  isCover: boolean
  newName?: string
  config?: string
  json?: boolean
  quiet?: boolean
}

const EXAMPLES = `
NAME is a full tag (srcHost-/srcDir-fileName[:version]) or a file name looked up in the tags
(narrowed by --src-host, --src-dir, --version; without --version the latest tag is meant).
The file is written to a temp name, verified, then renamed into place.

Examples:
  PullCLI pull --dst-path /data/ref 10.0.0.7-/data/ref-prices.csv:2026-11-21
  PullCLI pull --src-host 10.0.0.7 --version 2026-11-21 --dst-path /data/ref prices.csv
  PullCLI pull --has-flag F --is-cover false --new-name prices.new.csv --dst-path /data/ref prices.csv
  PullCLI pull --src-host ftp://csgw:21/in --dst-path /data/ref prices.csv
  PullCLI pull --json --dst-path /data/ref prices.csv
`

export function pullProgram(io: Output = stdio, deps: ClientDeps = {}): Command {
  const program = new Command('PullCLI')
    .description('Download files from Shoal through the local agent.')
    .version(softwareVersion(), '-V, --version', 'print the software version')
    .enablePositionalOptions()
    .addHelpText('after', exitCodesHelp())
  const cmd = program
    .command('pull')
    .description('Resolve a tag, have the agent fetch it through the swarm, and write it into a folder.')
    .argument('[name]', 'a full tag, or a file name (with --src-host ftp://…: the file in the CSGW folder)')
    .option('--tag <tag>', 'the tag to pull, srcHost-srcDir-fileName[:version]')
    .option(
      '--src-host <host>',
      'the host that pushed the file (narrows NAME), or a CSGW address ftp://host[:port]/dir to pull from instead of Shoal',
    )
    .option('--src-dir <dir>', 'the folder the file was pushed from (narrows NAME)')
    .option('--version <version>', 'the tag version (narrows NAME; default: latest)')
    .option(
      '--dst-host <host:port>',
      "the agent to download through (default: $SHOAL_AGENT, the config's agent, 127.0.0.1:16002)",
    )
    .requiredOption('--dst-path <dir>', 'the folder to write into (created if missing)')
    .option('--res-type <type>', 'file or directory (default: what the tag says)', oneOf('file', 'directory'))
    .option(
      '--res-desc <text>',
      'accepted for symmetry with push; the stored description is shown in the result',
    )
    .option(
      '--timeout <seconds>',
      "fail after this many seconds without progress (default: the config's timeouts.pull, 10; 0 = none)",
      parseSeconds,
    )
    .option(
      '--has-flag <F|N>',
      'F: write FILE.flag once FILE is in place and verified; N: no flag',
      oneOf('F', 'N'),
      'N',
    )
    .option(
      '--is-cover <true|false>',
      'true: replace an existing file atomically; false: keep it',
      parseBool,
      true,
    )
    .option('--new-name <name>', 'with --is-cover false: the name to write under when the file exists')
  addClientOptions(cmd)
    .addHelpText('after', EXAMPLES + exitCodesHelp())
    .action(async (name: string | undefined, f: PullFlags) => {
      if (f.newName !== undefined) checkName(f.newName, '--new-name')
      const { settings, reporter } = startClient(io, f, deps)
      const timeout = f.timeout ?? settings.timeouts.pull

      if (f.srcHost !== undefined && isCsgwAddress(f.srcHost)) {
        const file = name ?? (f.tag ? Tag.parse(f.tag).fileName : undefined)
        if (!file) throw usage('a file name is required (NAME or --tag)')
        const r = await pullFromCsgw({
          srcHost: f.srcHost,
          name: file,
          dstPath: f.dstPath,
          timeoutSeconds: timeout,
          isCover: f.isCover,
          newName: f.newName,
          hasFlag: f.hasFlag,
          flag: settings.flag,
          onProgress: reporter.progress,
        })
        reporter.result(
          {
            tag: f.tag,
            digest: r.digest,
            size: r.size,
            path: r.path,
            seconds: r.seconds,
            source: r.source,
            url: r.url,
            ...(r.flag ? { flag: r.flag } : {}),
          },
          [`pulled ${r.url} -> ${r.path} (${formatBytes(r.size)}, ${r.digest}, ${r.seconds.toFixed(2)} s)`],
        )
        return
      }

      if (f.tag !== undefined && name !== undefined)
        throw usage(`both --tag and NAME (${name}) given: pass one`)
      const dstHost = f.dstHost ?? settings.agent
      const agentToken = settings.tokenFile
        ? await readTokenFile(settings.tokenFile).catch((e) => Promise.reject(usage(toShoalError(e).message)))
        : undefined
      let tag: Tag
      if (f.tag !== undefined) {
        tag = Tag.parse(f.tag)
        if (f.version) tag = tag.withVersion(f.version)
      } else if (name !== undefined) {
        tag = await withProgressTimeout(`looking up ${name} in the tags`, timeout, (signal, progress) =>
          resolveName(name, {
            srcHost: f.srcHost,
            srcDir: f.srcDir,
            version: f.version,
            lister:
              deps.agentLister?.(dstHost) ??
              clientLister(new AgentClient(dstHost, { timeoutMs: 0, token: agentToken })),
            signal,
            onPage: progress.touch,
          }),
        )
      } else throw usage('a tag or a file name is required (--tag TAG or NAME)')

      const r = await pullAny({
        tag,
        dstPath: f.dstPath,
        dstHost,
        timeoutSeconds: timeout,
        isCover: f.isCover,
        newName: f.newName,
        hasFlag: f.hasFlag === 'F',
        flag: settings.flag,
        resType: f.resType,
        csgw: settings.csgw,
        onProgress: reporter.progress,
        notice: (line: string) => reporter.note(line),
        agentToken,
      })
      const json: Record<string, unknown> = {
        tag: String(r.tag),
        digest: String(r.digest),
        size: r.size,
        path: r.path,
        seconds: r.seconds,
        source: r.source ?? 'swarm',
      }
      for (const k of ['flag', 'files', 'fetchedFiles', 'localFiles', 'desc', 'fallbackReason'] as const)
        if (r[k] !== undefined) json[k] = r[k]
      const lines = [
        `pulled ${r.tag} -> ${r.path} (${formatBytes(r.size)}, ${r.digest}, ${r.seconds.toFixed(2)} s)`,
      ]
      if (r.desc) lines.push(`desc:   ${r.desc}`)
      if (r.flag) lines.push(`flag:   ${r.flag}`)
      reporter.result(json, lines)
    })
  addListCommand(program, io, deps)
  return program
}
