/** PushCLI push: the flags of the design's §4.2, their defaults and checks, and the output. */
import { basename, dirname, resolve } from 'node:path'
import { Tag } from '../core/index.js'
import { isCsgwAddress } from '../csgw/index.js'
import { Command } from './commander.js'
import {
  defaultSrcHost,
  exitCodesHelp,
  formatBytes,
  type Output,
  oneOf,
  parseSeconds,
  softwareVersion,
  stdio,
  usage,
} from './common.js'
import { pushToCsgw } from './csgw.js'
import { pushDirectory } from './dir-push.js'
import { waitForFlag } from './flag-file.js'
import { addClientOptions, type ClientDeps, startClient } from './output.js'
import { push } from './push.js'
import { withProgressTimeout } from './watchdog.js'

interface PushFlags {
  srcPath?: string
  srcHost?: string
  resType: 'file' | 'directory'
  resDesc?: string
  dstType: 'shoal' | 'csgw'
  dstHost?: string
  timeout?: number
  hasFlag: 'F' | 'N'
  tag?: string
  version?: string
  config?: string
  json?: boolean
  quiet?: boolean
}

const EXAMPLES = `
Examples:
  PushCLI push --src-path /data/ref/prices.csv --version 2026-11-21
  PushCLI push --has-flag F --timeout 600 --res-desc "EOD prices" /data/ref/prices.csv
  PushCLI push --res-type directory /data/ref/daily
  PushCLI push --dst-type csgw --dst-host ftp://csgw:21/in prices.csv   (credentials: SHOAL_CSGW_USER/PASSWORD or netrc)
  PushCLI push --json prices.csv
`

export function pushProgram(io: Output = stdio, deps: ClientDeps = {}): Command {
  const program = new Command('PushCLI')
    .description('Upload files to Shoal.')
    .version(softwareVersion(), '-V, --version', 'print the software version')
    // `push --version V` is the tag's version: program options stop at the command name.
    .enablePositionalOptions()
    .addHelpText('after', exitCodesHelp())
  const cmd = program
    .command('push')
    .description('Hash a file, upload it through the proxy (unless Shoal already has it) and tag it.')
    .argument('[file]', 'the file to push (same as --src-path)')
    .option('--src-path <path>', 'the file (or, with --res-type directory, the folder) to push')
    .option('--src-host <host>', "source host written into the tag (default: this host's first IPv4 address)")
    .option('--res-type <type>', 'file or directory', oneOf('file', 'directory'), 'file')
    .option('--res-desc <text>', 'a description stored with the tag, shown by pull and list')
    .option(
      '--dst-type <type>',
      'shoal (through the proxy) or csgw (FTP to --dst-host ftp://host[:port]/dir)',
      oneOf('shoal', 'csgw'),
      'shoal',
    )
    .option(
      '--dst-host <address>',
      "the proxy host:port (default: $SHOAL_PROXY, the config's proxy, 127.0.0.1:15000), or with --dst-type csgw the CSGW ftp://host[:port]/dir (default: $SHOAL_CSGW, the config's csgw)",
    )
    .option(
      '--timeout <seconds>',
      "fail after this many seconds without progress, waiting for the flag included (default: the config's timeouts.push, 30; 0 = none)",
      parseSeconds,
    )
    .option(
      '--has-flag <F|N>',
      'F: wait for FILE.flag before reading FILE; N: read at once',
      oneOf('F', 'N'),
      'N',
    )
    .option(
      '--tag <tag>',
      'the tag, srcHost-srcDir-fileName[:version] (default: built from --src-host and the path)',
    )
    .option(
      '--version <version>',
      'version part of the tag (default: latest; any other version is immutable)',
    )
  addClientOptions(cmd)
    .addHelpText('after', EXAMPLES + exitCodesHelp())
    .action(async (file: string | undefined, f: PushFlags) => {
      if (f.srcPath !== undefined && file !== undefined && resolve(f.srcPath) !== resolve(file))
        throw usage(`two files given: ${file} and --src-path ${f.srcPath}; push one at a time`)
      const srcPath = f.srcPath ?? file
      if (!srcPath) throw usage('a file is required (--src-path FILE or the FILE argument)')
      const { settings, reporter } = startClient(io, f, deps)
      const timeout = f.timeout ?? settings.timeouts.push
      if (f.resType === 'directory') {
        if (f.dstType === 'csgw' || (f.dstHost !== undefined && isCsgwAddress(f.dstHost)))
          throw usage('--res-type directory pushes to Shoal only; a CSGW takes single files')
        const path = resolve(srcPath)
        const tag = f.tag
          ? f.version
            ? Tag.parse(f.tag).withVersion(f.version)
            : Tag.parse(f.tag)
          : Tag.from({
              srcHost: f.srcHost ?? defaultSrcHost(),
              srcDir: dirname(path),
              fileName: basename(path),
              version: f.version,
            })
        const r = await pushDirectory({
          srcPath,
          tag,
          dstHost: f.dstHost ?? settings.proxy,
          timeoutSeconds: timeout,
          hasFlag: f.hasFlag === 'F',
          flag: { suffix: settings.flag.suffix },
          meta: f.resDesc !== undefined ? { desc: f.resDesc } : {},
          onProgress: reporter.progress,
        })
        const { tag: t, digest, ...rest } = r
        reporter.result(
          {
            tag: t.toString(),
            digest: digest.toString(),
            ...rest,
            ...(f.resDesc ? { desc: f.resDesc } : {}),
          },
          [
            `tag:    ${t}`,
            `digest: ${digest} (manifest)`,
            `files:  ${r.files} (${formatBytes(r.size)}); new: ${r.newFiles} (${formatBytes(r.newBytes)})`,
          ],
        )
        return
      }

      if (f.dstType === 'csgw' || (f.dstHost !== undefined && isCsgwAddress(f.dstHost))) {
        const dstHost = f.dstHost ?? settings.csgw
        if (!dstHost || !isCsgwAddress(dstHost))
          throw usage(
            '--dst-type csgw needs --dst-host ftp://host[:port]/dir (or SHOAL_CSGW, or csgw: in the client config)',
          )
        if (f.hasFlag === 'F')
          await withProgressTimeout(`waiting for the flag of ${srcPath}`, timeout, (signal) =>
            waitForFlag(resolve(srcPath), { suffix: settings.flag.suffix, signal }),
          )
        const r = await pushToCsgw({ srcPath, dstHost, timeoutSeconds: timeout })
        const seconds = reporter.seconds()
        reporter.result(
          { destination: 'csgw', url: r.url, digest: r.digest, size: r.size, uploaded: true, seconds },
          [`csgw:   ${r.url}`, `digest: ${r.digest}`, `size:   ${r.size} (${formatBytes(r.size)})`],
        )
        return
      }

      const r = await push({
        srcPath,
        srcHost: f.srcHost ?? defaultSrcHost(),
        tag: f.tag,
        version: f.version,
        dstHost: f.dstHost ?? settings.proxy,
        timeoutSeconds: timeout,
        hasFlag: f.hasFlag === 'F',
        flagSuffix: settings.flag.suffix,
        meta: f.resDesc !== undefined ? { desc: f.resDesc } : {},
        onProgress: reporter.progress,
      })
      const json: Record<string, unknown> = {
        tag: r.tag.toString(),
        digest: r.digest.toString(),
        size: r.size,
        uploaded: r.uploaded,
        seconds: r.seconds,
      }
      if (f.resDesc !== undefined) json.desc = f.resDesc
      reporter.result(json, [
        `tag:    ${r.tag}`,
        `digest: ${r.digest}`,
        `size:   ${r.size} (${formatBytes(r.size)})${r.uploaded ? '' : ', already stored: only the tag was written'}`,
      ])
    })
  return program
}
