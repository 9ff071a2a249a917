/** The user-facing CLIs: PushCLI push, PullCLI pull, RemoveCLI remove. */
import { Tag } from '../core/index.js'
import { isCsgwAddress } from '../csgw/index.js'
import { Command } from './commander.js'
import {
  DEFAULT_AGENT,
  DEFAULT_PROXY,
  defaultSrcHost,
  formatBytes,
  type Output,
  parseSeconds,
  stdio,
} from './common.js'
import { pullFromCsgw, pushToCsgw } from './csgw.js'
import { pull } from './pull.js'
import { push } from './push.js'
import { remove } from './remove.js'

export function pushProgram(io: Output = stdio): Command {
  const program = new Command('PushCLI').description('Upload files to Shoal.')
  program
    .command('push')
    .description('Hash a file, upload it through the proxy (unless Shoal already has it) and tag it.')
    .argument('[file]', 'the file to push (same as --src-path)')
    .option('--src-path <path>', 'the file to push')
    .option('--src-host <host>', "source host written into the tag (default: this host's first IPv4 address)")
    .option(
      '--tag <tag>',
      "tag srcHost-srcDir-fileName[:version] (default: built from --src-host and the file's path)",
    )
    .option('--version <version>', 'version part of the tag (default: latest)')
    .option(
      '--dst-type <type>',
      'shoal (through the proxy) or csgw (FTP to --dst-host ftp://host[:port]/dir)',
      'shoal',
    )
    .option('--dst-host <host:port>', 'the proxy to push through, or the CSGW address', DEFAULT_PROXY)
    .option('--timeout <seconds>', 'give up after this many seconds (exit code 124)', parseSeconds)
    .addHelpText(
      'after',
      '\nExamples:\n  PushCLI push --src-path /data/ref/prices.csv --version 2026-11-21\n' +
        '  SHOAL_CSGW_USER=ops SHOAL_CSGW_PASSWORD=... PushCLI push --dst-type csgw --dst-host ftp://csgw:21/in prices.csv\n',
    )
    .action(async (file: string | undefined, f) => {
      const srcPath = f.srcPath ?? file
      if (!srcPath) throw program.error('error: a file is required (--src-path FILE)', { exitCode: 2 })
      if (f.dstType !== 'shoal' && f.dstType !== 'csgw')
        throw program.error(`error: --dst-type must be shoal or csgw, not ${f.dstType}`, { exitCode: 2 })
      if (f.dstType === 'csgw' || isCsgwAddress(f.dstHost)) {
        if (!isCsgwAddress(f.dstHost))
          throw program.error('error: --dst-type csgw needs --dst-host ftp://host[:port]/dir', {
            exitCode: 2,
          })
        const r = await pushToCsgw({ srcPath, dstHost: f.dstHost, timeoutSeconds: f.timeout })
        io.out(`csgw:   ${r.url}`)
        io.out(`digest: ${r.digest}`)
        io.out(`size:   ${r.size} (${formatBytes(r.size)})`)
        return
      }
      const r = await push({
        srcPath,
        srcHost: f.srcHost ?? defaultSrcHost(),
        tag: f.tag,
        version: f.version,
        dstHost: f.dstHost,
        timeoutSeconds: f.timeout,
      })
      io.out(`tag:    ${r.tag}`)
      io.out(`digest: ${r.digest}`)
      io.out(
        `size:   ${r.size} (${formatBytes(r.size)})${r.uploaded ? '' : ', already stored: only the tag was written'}`,
      )
    })
  return program
}

export function pullProgram(io: Output = stdio): Command {
  const program = new Command('PullCLI').description('Download files from Shoal through the local agent.')
  program
    .command('pull')
    .description(
      'Resolve a tag, have the agent fetch the blob through the swarm, and write it into a folder.',
    )
    .argument('[name]', 'with --src-host ftp://…: the file name in the CSGW folder')
    .option('--tag <tag>', 'the tag to pull, srcHost-srcDir-fileName[:version]')
    .requiredOption('--dst-path <dir>', 'the folder to write the file into (created if missing)')
    .option('--src-host <address>', 'a CSGW address ftp://host[:port]/dir to pull from instead of Shoal')
    .option('--dst-host <host:port>', 'the agent to download through', DEFAULT_AGENT)
    .option(
      '--timeout <seconds>',
      'give up after this many seconds (exit code 124); from a CSGW: of no progress',
      parseSeconds,
    )
    .addHelpText(
      'after',
      '\nThe file is written to a temp name, verified, then renamed into place.\n' +
        'Example: PullCLI pull --src-host ftp://csgw:21/in --dst-path /data prices.csv\n',
    )
    .action(async (name: string | undefined, f) => {
      if (f.srcHost !== undefined && isCsgwAddress(f.srcHost)) {
        const file = name ?? (f.tag ? Tag.parse(f.tag).fileName : undefined)
        if (!file) throw program.error('error: a file name is required (NAME or --tag)', { exitCode: 2 })
        const r = await pullFromCsgw({
          srcHost: f.srcHost,
          name: file,
          dstPath: f.dstPath,
          timeoutSeconds: f.timeout,
        })
        io.out(
          `pulled ${r.url} -> ${r.path} (${formatBytes(r.size)}, ${r.digest}, ${r.seconds.toFixed(2)} s)`,
        )
        return
      }
      if (f.srcHost !== undefined)
        throw program.error(
          'error: --src-host takes a CSGW address ftp://host[:port]/dir; the agent is --dst-host',
          {
            exitCode: 2,
          },
        )
      if (!f.tag) throw program.error('error: a tag is required (--tag TAG)', { exitCode: 2 })
      const r = await pull({ tag: f.tag, dstPath: f.dstPath, dstHost: f.dstHost, timeoutSeconds: f.timeout })
      io.out(`pulled ${r.tag} -> ${r.path} (${formatBytes(r.size)}, ${r.digest}, ${r.seconds.toFixed(2)} s)`)
    })
  return program
}

export function removeProgram(io: Output = stdio): Command {
  const program = new Command('RemoveCLI').description('Retire files from Shoal (files already pulled stay).')
  program
    .command('remove')
    .description('Delete a tag from Shoal.')
    .requiredOption('--tag <tag>', 'the tag to remove')
    .option('--dst-host <host:port>', 'the proxy', DEFAULT_PROXY)
    .option('--timeout <seconds>', 'give up after this many seconds (exit code 124)', parseSeconds)
    .action(async (f) => {
      const tag = await remove({ tag: f.tag, dstHost: f.dstHost, timeoutSeconds: f.timeout })
      io.out(`removed ${tag}`)
    })
  return program
}
