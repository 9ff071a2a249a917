/** RemoveCLI remove: the flags of the design's §4.4 and the output. */
import { Tag } from '../core/index.js'
import { ProxyClient } from '../proxy/client/index.js'
import { Command } from './commander.js'
import { exitCodesHelp, type Output, parseSeconds, softwareVersion, stdio, usage } from './common.js'
import { addClientOptions, type ClientDeps, startClient } from './output.js'
import { remove } from './remove.js'
import { clientLister, resolveName } from './resolve-name.js'
import { withProgressTimeout } from './watchdog.js'

interface RemoveFlags {
  tag?: string
  srcHost?: string
  srcDir?: string
  version?: string
  dstHost?: string
  timeout?: number
  config?: string
  json?: boolean
  quiet?: boolean
}

const EXAMPLES = `
Files already pulled onto hosts stay; the blob follows garbage collection and the agents' TTL.

Examples:
  RemoveCLI remove 10.0.0.7-/data/ref-prices.csv:2026-11-21
  RemoveCLI remove prices.csv --src-host 10.0.0.7 --version 2026-11-21
  RemoveCLI remove --tag 10.0.0.7-/data/ref-prices.csv --dst-host proxy:15000 --json
`

export function removeProgram(io: Output = stdio, deps: ClientDeps = {}): Command {
  const program = new Command('RemoveCLI')
    .description('Retire files from Shoal (files already pulled stay).')
    .version(softwareVersion(), '-V, --version', 'print the software version')
    .enablePositionalOptions()
    .addHelpText('after', exitCodesHelp())
  const cmd = program
    .command('remove')
    .description('Delete a tag from Shoal.')
    .argument('[name]', 'a full tag, or a file name looked up in the tags (like PullCLI NAME)')
    .option('--tag <tag>', 'the tag to remove')
    .option('--src-host <host>', 'the host that pushed the file (narrows NAME)')
    .option('--src-dir <dir>', 'the folder the file was pushed from (narrows NAME)')
    .option('--version <version>', 'the tag version (narrows NAME; default: latest)')
    .option(
      '--dst-host <host:port>',
      "the proxy (default: $SHOAL_PROXY, the config's proxy, 127.0.0.1:15000)",
    )
    .option(
      '--timeout <seconds>',
      "fail after this many seconds without an answer (default: the config's timeouts.remove, 30; 0 = none)",
      parseSeconds,
    )
  addClientOptions(cmd)
    .addHelpText('after', EXAMPLES + exitCodesHelp())
    .action(async (name: string | undefined, f: RemoveFlags) => {
      if (f.tag !== undefined && name !== undefined)
        throw usage(`both --tag and NAME (${name}) given: pass one`)
      const { settings, reporter } = startClient(io, f, deps)
      const dstHost = f.dstHost ?? settings.proxy
      let tag: Tag
      if (f.tag !== undefined) tag = f.version ? Tag.parse(f.tag).withVersion(f.version) : Tag.parse(f.tag)
      else if (name !== undefined)
        tag = await withProgressTimeout(
          `looking up ${name} in the tags`,
          f.timeout ?? settings.timeouts.remove,
          (signal, progress) =>
            resolveName(name, {
              srcHost: f.srcHost,
              srcDir: f.srcDir,
              version: f.version,
              lister: deps.proxyLister?.(dstHost) ?? clientLister(new ProxyClient(dstHost)),
              signal,
              onPage: progress.touch,
            }),
        )
      else throw usage('a tag is required (--tag TAG or NAME)')
      const removed = await remove({ tag, dstHost, timeoutSeconds: f.timeout ?? settings.timeouts.remove })
      reporter.result({ tag: removed.toString(), removed: true, seconds: reporter.seconds() }, [
        `removed ${removed}`,
      ])
    })
  return program
}
