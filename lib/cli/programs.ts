/** The user-facing CLIs: PushCLI push, PullCLI pull, RemoveCLI remove. */
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
    .option('--dst-host <host:port>', 'the proxy to push through', DEFAULT_PROXY)
    .option('--timeout <seconds>', 'give up after this many seconds (exit code 124)', parseSeconds)
    .addHelpText('after', '\nExample:\n  PushCLI push --src-path /data/ref/prices.csv --version 2026-11-21\n')
    .action(async (file: string | undefined, f) => {
      const srcPath = f.srcPath ?? file
      if (!srcPath) throw program.error('error: a file is required (--src-path FILE)', { exitCode: 2 })
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
    .requiredOption('--tag <tag>', 'the tag to pull, srcHost-srcDir-fileName[:version]')
    .requiredOption('--dst-path <dir>', 'the folder to write the file into (created if missing)')
    .option('--dst-host <host:port>', 'the agent to download through', DEFAULT_AGENT)
    .option('--timeout <seconds>', 'give up after this many seconds (exit code 124)', parseSeconds)
    .addHelpText(
      'after',
      '\nThe file is written to a temp name, verified by sha256, then renamed into place.\n',
    )
    .action(async (f) => {
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
